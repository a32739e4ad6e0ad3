module github.com/warmproxy/warmproxy

go 1.26.0
