//go:build !race

package h1server

const raceOn = false
