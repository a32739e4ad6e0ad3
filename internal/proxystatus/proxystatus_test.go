package proxystatus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rfc9209 is section 2.3 of RFC 9209, subsection by subsection (2.3.1 to
// 2.3.32), copied from the RFC.
var rfc9209 = []string{
	"dns_timeout", "dns_error", "destination_not_found", "destination_unavailable",
	"destination_ip_prohibited", "destination_ip_unroutable", "connection_refused",
	"connection_terminated", "connection_timeout", "connection_read_timeout",
	"connection_write_timeout", "connection_limit_reached", "tls_protocol_error",
	"tls_certificate_error", "tls_alert_received", "http_request_error",
	"http_request_denied", "http_response_incomplete", "http_response_header_section_size",
	"http_response_header_size", "http_response_body_size", "http_response_trailer_section_size",
	"http_response_trailer_size", "http_response_transfer_coding", "http_response_content_coding",
	"http_response_timeout", "http_upgrade_failed", "http_protocol_error",
	"proxy_internal_response", "proxy_internal_error", "proxy_configuration_error",
	"proxy_loop_detected",
}

// Issue 16: the list holds every type of RFC 9209 section 2.3, in order,
// and nothing else.
func TestTypesAreRFC9209(t *testing.T) {
	if got := Types(); !slices.Equal(got, rfc9209) {
		t.Errorf("Types() = %q, want %q", got, rfc9209)
	}
	Types()[0] = "changed"
	if got := Types()[0]; got != DNSTimeout {
		t.Errorf("Types()[0] after the caller changed its copy = %q, want %q", got, DNSTimeout)
	}
}

// Issue 16: every constant of the package is in the list, so a type
// added without listing it fails here.
func TestConstantsListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "proxystatus.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		d, ok := n.(*ast.GenDecl)
		if !ok || d.Tok != token.CONST {
			return true
		}
		for _, s := range d.Specs {
			for _, v := range s.(*ast.ValueSpec).Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					consts = append(consts, s)
				}
			}
		}
		return false
	})
	slices.Sort(consts)
	want := Types()
	slices.Sort(want)
	if !slices.Equal(consts, want) {
		t.Errorf("constants = %q, listed = %q", consts, want)
	}
}

// errorParam is an error type written into a Proxy-Status value by hand.
var errorParam = regexp.MustCompile(`error=([a-z_]+)`)

// typeLike is a quoted literal spelled as an error type is (a PEM block's
// Type, "CERTIFICATE", is not).
var typeLike = regexp.MustCompile(`^"[a-z]+(_[a-z]+)*"$`)

// Issue 16: every error type the proxy emits is one of the list. Outside
// this package no source file spells a type as a string: it names the
// constant (so it is listed), and a hand-written "error=x" field or a
// `Type: "x"` literal names a listed type.
func TestEmittedTypesListed(t *testing.T) {
	root := filepath.Join("..", "..")
	listed := Types()
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || name == "proxystatus" || strings.HasPrefix(name, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					return true
				}
				s, _ := strconv.Unquote(n.Value)
				if slices.Contains(listed, s) {
					t.Errorf("%s: %q spelled out: use the proxystatus constant", fset.Position(n.Pos()), s)
				}
				for _, m := range errorParam.FindAllStringSubmatch(s, -1) {
					if !slices.Contains(listed, m[1]) {
						t.Errorf("%s: error=%s is not an RFC 9209 type", fset.Position(n.Pos()), m[1])
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Type" {
					if lit, ok := n.Value.(*ast.BasicLit); ok && typeLike.MatchString(lit.Value) {
						t.Errorf("%s: Type: %s is not an RFC 9209 type", fset.Position(n.Pos()), lit.Value)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read %d Go files under %s, want the whole module", files, root)
	}
}
