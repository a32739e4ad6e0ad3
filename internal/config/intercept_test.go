package config

import "testing"

// Issue 13: the interception settings are checked together, each problem
// with how to fix it.
func TestValidateIntercept(t *testing.T) {
	dir := t.TempDir()
	checkValidate(t, []validateCase{
		{"off", func(c *Config) {}, ""},
		{"on", func(c *Config) { c.Intercept, c.InterceptCA = "api.test,*.example.com,127.0.0.1", dir }, ""},
		{"no ca", func(c *Config) { c.Intercept = "api.test" }, "warmproxy ca init -intercept 'api.test' DIR"},
		{"ca without patterns", func(c *Config) { c.InterceptCA = dir }, "intercept-ca is set but intercept is not"},
		{"missing ca dir", func(c *Config) { c.Intercept, c.InterceptCA = "api.test", dir+"/nope" }, "make one with warmproxy ca init"},
		{"bad pattern", func(c *Config) { c.Intercept, c.InterceptCA = "api..test", dir }, "intercept: rule"},
		{"catch-all", func(c *Config) { c.Intercept, c.InterceptCA = "*", dir }, "-intercept-any-host-i-know"},
		{"port-only catch-all", func(c *Config) { c.Intercept, c.InterceptCA = ":443", dir }, "-intercept-any-host-i-know"},
		{"catch-all allowed", func(c *Config) { c.Intercept, c.InterceptCA, c.InterceptAnyHostIKnow = "*", dir, true }, ""},
	})
}
