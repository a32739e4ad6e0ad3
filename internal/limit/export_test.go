package limit

// Waiting returns the number of requests queued for host.
func (h *Hosts) Waiting(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.hosts[host]; st != nil {
		return len(st.waiters)
	}
	return 0
}
