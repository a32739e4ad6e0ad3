package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/warmproxy/warmproxy/internal/intercept"
)

const caUsage = `Usage:
  warmproxy ca init [-intercept PATTERNS] [-force] DIR
      make an interception CA in DIR (ca.pem, and ca-key.pem with mode 0600)
      whose name constraints permit only the names of PATTERNS (default
      $WARMPROXY_INTERCEPT); run it again with -force when the patterns change
  warmproxy ca print [DIR]
      show the CA in DIR (default $WARMPROXY_INTERCEPT_CA) and how to make
      clients trust it
`

// runCA runs "warmproxy ca ...": the interception CA (issue 13).
func runCA(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = caInit(args[1:], getenv, stdout, stderr)
	case "print":
		err = caPrint(args[1:], getenv, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return 0
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "warmproxy ca: %v\n%s", err, caUsage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "warmproxy ca: %v\n", err)
		return 1
	}
	return 0
}

// usageError is a bad command line of "warmproxy ca".
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func caInit(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("warmproxy ca init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	patterns := fs.String("intercept", getenv(envName("intercept")), "host `patterns` the CA may sign for, comma-separated, as -intercept")
	anyHost := fs.Bool("intercept-any-host-i-know", false, "allow a catch-all pattern: the CA then carries no name constraints")
	force := fs.Bool("force", false, "replace an existing CA")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"ca init: want one directory"}
	}
	dir := fs.Arg(0)
	ps, err := intercept.ParsePatterns(*patterns)
	if err != nil {
		return fmt.Errorf("ca init: -intercept: %v", err)
	}
	if len(ps) == 0 {
		return usageError{"ca init: name the hosts the CA may sign for with -intercept (or WARMPROXY_INTERCEPT)"}
	}
	for _, p := range ps {
		if p.Any() && !*anyHost {
			return fmt.Errorf("ca init: pattern %s matches every host: such a CA can sign for any name; list the hosts, or pass -intercept-any-host-i-know", p)
		}
	}
	if err := intercept.Init(dir, ps, *force, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (mode 0600, keep it secret)\nrun warmproxy -intercept '%s' -intercept-ca %s\nand see warmproxy ca print %s for how clients trust it\n",
		filepath.Join(dir, intercept.CertFile), filepath.Join(dir, intercept.KeyFile), *patterns, dir, dir)
	return nil
}

func caPrint(args []string, getenv func(string) string, stdout io.Writer) error {
	dir := getenv(envName("intercept-ca"))
	switch {
	case len(args) == 1:
		dir = args[0]
	case len(args) > 1:
		return usageError{"ca print: want at most one directory"}
	}
	if dir == "" {
		return usageError{"ca print: name the CA's directory, or set WARMPROXY_INTERCEPT_CA"}
	}
	ca, err := intercept.LoadCA(dir, time.Now())
	if err != nil {
		return err
	}
	c := ca.Cert
	sum := sha256.Sum256(c.Raw)
	abs, err := filepath.Abs(filepath.Join(dir, intercept.CertFile))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "subject:     %s\nvalid:       %s to %s\nsha256:      %s\n", c.Subject, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), strings.ToUpper(hex.EncodeToString(sum[:])))
	if ca.Constrained() {
		ips := make([]string, 0, len(c.PermittedIPRanges))
		for _, n := range c.PermittedIPRanges {
			ips = append(ips, n.String())
		}
		fmt.Fprintf(stdout, "may sign for: DNS %s; IP %s\n", orNone(c.PermittedDNSDomains), orNone(ips))
	} else {
		fmt.Fprintf(stdout, "may sign for: any name (no name constraints: keep its key as safe as a root key)\n")
	}
	fmt.Fprintf(stdout, "\n%s\n", ca.PEM)
	fmt.Fprintf(stdout, trustHelp, abs)
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// trustHelp says how each client trusts the CA; %[1]s is ca.pem's path.
const trustHelp = `How clients trust it (only for the hosts in -intercept; others keep their own certificates):
  PHP curl:      curl_setopt($ch, CURLOPT_CAINFO, '%[1]s');
  php.ini:       curl.cainfo = %[1]s
                 openssl.cafile = %[1]s   (streams, file_get_contents)
  OpenSSL-based: SSL_CERT_FILE=%[1]s   (replaces the system bundle: concatenate it)
  curl:          curl --cacert %[1]s ...  or CURL_CA_BUNDLE=%[1]s
  Python:        REQUESTS_CA_BUNDLE=%[1]s (requests), SSL_CERT_FILE for urllib
  Node:          NODE_EXTRA_CA_CERTS=%[1]s (added to the built-in roots)
  Go:            SSL_CERT_FILE=%[1]s, or add it to tls.Config.RootCAs
  Debian system: cp %[1]s /usr/local/share/ca-certificates/warmproxy.crt && update-ca-certificates
`
