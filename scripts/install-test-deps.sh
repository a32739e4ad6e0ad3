#!/usr/bin/env bash
# Installs the programs the test suite drives: curl, php with its curl
# extension, nginx, node and python, systemd-analyze, chromium (the stats
# page), prometheus and promtool (the dashboard's queries), and the e2e
# Node client's npm packages. Idempotent; needs root for apt-get.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v php >/dev/null || need+=(php-cli)
php -m 2>/dev/null | grep -qi '^curl$' || need+=(php-curl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3)
# Issue 13, TLS interception: Debian's python3 with requests, openssl (the
# name-constraint check, s_client), PHP-FPM and cgi-fcgi to drive it.
/usr/bin/python3 -c 'import requests' 2>/dev/null || need+=(python3-requests)
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/sbin/php-fpm8.2 ] || command -v php-fpm >/dev/null || need+=(php-fpm)
command -v cgi-fcgi >/dev/null || need+=(libfcgi-bin)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v git >/dev/null || need+=(git)
command -v chromium >/dev/null || need+=(chromium)
# Debian's prometheus package ships both /usr/bin/prometheus and promtool.
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# undici for e2e/testdata/node/client.js, at the version its lock file pins.
node_dir="$(cd "$(dirname "$0")/.." && pwd)/e2e/testdata/node"
if ! (cd "$node_dir" && node -e '
  const want = require("./package-lock.json").packages["node_modules/undici"].version;
  process.exit(require("./node_modules/undici/package.json").version === want ? 0 : 1);' 2>/dev/null); then
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi
