package rttrelay

import "runtime"

func spinYield() { runtime.Gosched() }
