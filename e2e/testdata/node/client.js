'use strict'
// One request through warmproxy with fetch and undici's ProxyAgent.
//
// Usage: node client.js PROXY URL [HEADER [CAFILE]]
// Arguments as for ../php/curl.php. Prints the body, then "STATUS <code>".
//
// proxyTunnel: false sends http:// URLs to the proxy as ordinary proxy
// requests (absolute-form), so the protocol header can make warmproxy
// reuse its TLS connection; https:// URLs still go through CONNECT.
const fs = require('node:fs')
const { ProxyAgent, fetch } = require('undici')

async function main () {
  const [proxy, url, header = '', cafile = ''] = process.argv.slice(2)
  const headers = {}
  if (header) {
    const i = header.indexOf(':')
    headers[header.slice(0, i).trim()] = header.slice(i + 1).trim()
  }
  const agent = new ProxyAgent({
    uri: 'http://' + proxy,
    proxyTunnel: false,
    requestTls: cafile ? { ca: fs.readFileSync(cafile) } : undefined
  })
  try {
    const res = await fetch(url, { dispatcher: agent, headers, signal: AbortSignal.timeout(10000) })
    const body = await res.text()
    process.stdout.write(body + '\nSTATUS ' + res.status + '\n')
  } finally {
    await agent.close()
  }
}

main().catch((err) => {
  console.error('client.js:', err)
  process.exit(1)
})
