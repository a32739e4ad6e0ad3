<?php
// One request through warmproxy with PHP's http:// stream wrapper
// (file_get_contents and a stream context), as a PHP-FPM worker makes it.
//
// Usage: php stream.php PROXY URL [HEADER [CAFILE]]
// Arguments as for curl.php. Prints the body, then a line "STATUS <code>".
[, $proxy, $url] = $argv;
$header = $argv[3] ?? '';
$cafile = $argv[4] ?? '';

$http = [
    'proxy' => 'tcp://' . $proxy,
    'request_fulluri' => true,
    'timeout' => 10,
    'ignore_errors' => true, // return the body of a 4xx/5xx too
];
if ($header !== '') {
    $http['header'] = $header . "\r\n";
}
$context = ['http' => $http];
if ($cafile !== '') {
    $context['ssl'] = ['cafile' => $cafile, 'verify_peer' => true, 'verify_peer_name' => true];
}
$body = file_get_contents($url, false, stream_context_create($context));
if ($body === false || !isset($http_response_header[0])) {
    fwrite(STDERR, "stream.php: request failed\n");
    exit(1);
}
// The last status line: a proxy's CONNECT answer may come first.
$status = 0;
foreach ($http_response_header as $line) {
    if (preg_match('{^HTTP/\S+\s+(\d{3})}', $line, $m)) {
        $status = (int) $m[1];
    }
}
echo $body, "\nSTATUS ", $status, "\n";
