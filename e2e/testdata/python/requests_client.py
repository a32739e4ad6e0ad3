"""One request through warmproxy with requests (Debian's python3-requests).

Usage: python3 requests_client.py PROXY URL [HEADER [CAFILE]]
Arguments as for ../php/curl.php. Prints the body, then "STATUS <code>".
An https:// URL goes through CONNECT; CAFILE is what REQUESTS_CA_BUNDLE
would name.
"""
import sys

import requests


def main():
    proxy, url = sys.argv[1], sys.argv[2]
    header = sys.argv[3] if len(sys.argv) > 3 else ""
    cafile = sys.argv[4] if len(sys.argv) > 4 else ""
    headers = {}
    if header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    proxies = {"http": "http://" + proxy, "https": "http://" + proxy}
    resp = requests.get(url, headers=headers, proxies=proxies, verify=cafile or True, timeout=10)
    sys.stdout.write(resp.text + "\nSTATUS %d\n" % resp.status_code)


if __name__ == "__main__":
    main()
