module github.com/warmproxy/warmproxy

go 1.26.0

require (
	go.uber.org/goleak v1.3.0
	golang.org/x/crypto v0.58.0
)
