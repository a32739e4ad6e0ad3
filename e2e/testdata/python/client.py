"""One request through warmproxy with urllib and a ProxyHandler.

Usage: python3 client.py PROXY URL [HEADER [CAFILE]]
Arguments as for ../php/curl.php. Prints the body, then "STATUS <code>".
"""
import ssl
import sys
import urllib.error
import urllib.request


def main():
    proxy, url = sys.argv[1], sys.argv[2]
    header = sys.argv[3] if len(sys.argv) > 3 else ""
    cafile = sys.argv[4] if len(sys.argv) > 4 else ""
    handlers = [urllib.request.ProxyHandler({"http": "http://" + proxy, "https": "http://" + proxy})]
    if cafile:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url)
    if header:
        name, _, value = header.partition(":")
        req.add_header(name.strip(), value.strip())
    try:
        with opener.open(req, timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    sys.stdout.write(body.decode() + "\nSTATUS %d\n" % status)


if __name__ == "__main__":
    main()
