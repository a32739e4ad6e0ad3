// Command goclient makes one request through warmproxy with net/http and a
// Transport whose Proxy is set, then exits, as a short-lived job would.
//
// Usage: goclient PROXY URL [HEADER [CAFILE]]
// Arguments as for ../php/curl.php. Prints the body, then "STATUS <code>".
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "goclient:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: goclient PROXY URL [HEADER [CAFILE]]")
	}
	proxy, target := args[0], args[1]
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}
	if len(args) > 3 && args[3] != "" {
		pem, err := os.ReadFile(args[3])
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", args[3])
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	if len(args) > 2 && args[2] != "" {
		name, value, _ := strings.Cut(args[2], ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Printf("%s\nSTATUS %d\n", body, resp.StatusCode)
	return nil
}
