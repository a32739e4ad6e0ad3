package metrics

import "github.com/prometheus/client_golang/prometheus"

// Registry returns the private registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
