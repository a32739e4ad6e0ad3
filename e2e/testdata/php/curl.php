<?php
// One request through warmproxy with PHP's curl extension, made the way a
// PHP-FPM worker makes it: a fresh handle, nothing kept after the script.
//
// Usage: php curl.php PROXY URL [HEADER [CAFILE]]
//   PROXY   host:port of warmproxy
//   URL     http://... (with HEADER "X-Real-Protocol: https" warmproxy
//           speaks TLS to the origin and reuses it) or https://... (CONNECT)
//   CAFILE  PEM roots for an https:// URL's end-to-end TLS
// Prints the body, then a line "STATUS <code>".
[, $proxy, $url] = $argv;
$header = $argv[3] ?? '';
$cafile = $argv[4] ?? '';

$ch = curl_init($url);
$opts = [
    CURLOPT_PROXY => 'http://' . $proxy,
    CURLOPT_RETURNTRANSFER => true,
    CURLOPT_TIMEOUT => 10,
];
if ($header !== '') {
    $opts[CURLOPT_HTTPHEADER] = [$header];
}
if ($cafile !== '') {
    $opts[CURLOPT_CAINFO] = $cafile;
}
curl_setopt_array($ch, $opts);
$body = curl_exec($ch);
if ($body === false) {
    fwrite(STDERR, 'curl.php: ' . curl_error($ch) . "\n");
    exit(1);
}
echo $body, "\nSTATUS ", curl_getinfo($ch, CURLINFO_RESPONSE_CODE), "\n";
