// Package proxystatus is the vocabulary of the Proxy-Status response
// field (RFC 9209): the error types of its section 2.3, once. The proxy
// writes them and the metrics count them by these names; neither keeps a
// copy of its own.
package proxystatus

// The error types of RFC 9209 section 2.3, in the RFC's order.
const (
	DNSTimeout                     = "dns_timeout"
	DNSError                       = "dns_error"
	DestinationNotFound            = "destination_not_found"
	DestinationUnavailable         = "destination_unavailable"
	DestinationIPProhibited        = "destination_ip_prohibited"
	DestinationIPUnroutable        = "destination_ip_unroutable"
	ConnectionRefused              = "connection_refused"
	ConnectionTerminated           = "connection_terminated"
	ConnectionTimeout              = "connection_timeout"
	ConnectionReadTimeout          = "connection_read_timeout"
	ConnectionWriteTimeout         = "connection_write_timeout"
	ConnectionLimitReached         = "connection_limit_reached"
	TLSProtocolError               = "tls_protocol_error"
	TLSCertificateError            = "tls_certificate_error"
	TLSAlertReceived               = "tls_alert_received"
	HTTPRequestError               = "http_request_error"
	HTTPRequestDenied              = "http_request_denied"
	HTTPResponseIncomplete         = "http_response_incomplete"
	HTTPResponseHeaderSectionSize  = "http_response_header_section_size"
	HTTPResponseHeaderSize         = "http_response_header_size"
	HTTPResponseBodySize           = "http_response_body_size"
	HTTPResponseTrailerSectionSize = "http_response_trailer_section_size"
	HTTPResponseTrailerSize        = "http_response_trailer_size"
	HTTPResponseTransferCoding     = "http_response_transfer_coding"
	HTTPResponseContentCoding      = "http_response_content_coding"
	HTTPResponseTimeout            = "http_response_timeout"
	HTTPUpgradeFailed              = "http_upgrade_failed"
	HTTPProtocolError              = "http_protocol_error"
	ProxyInternalResponse          = "proxy_internal_response"
	ProxyInternalError             = "proxy_internal_error"
	ProxyConfigurationError        = "proxy_configuration_error"
	ProxyLoopDetected              = "proxy_loop_detected"
)

// types is the one list of the constants above.
var types = [...]string{
	DNSTimeout, DNSError, DestinationNotFound, DestinationUnavailable,
	DestinationIPProhibited, DestinationIPUnroutable,
	ConnectionRefused, ConnectionTerminated, ConnectionTimeout,
	ConnectionReadTimeout, ConnectionWriteTimeout, ConnectionLimitReached,
	TLSProtocolError, TLSCertificateError, TLSAlertReceived,
	HTTPRequestError, HTTPRequestDenied, HTTPResponseIncomplete,
	HTTPResponseHeaderSectionSize, HTTPResponseHeaderSize, HTTPResponseBodySize,
	HTTPResponseTrailerSectionSize, HTTPResponseTrailerSize,
	HTTPResponseTransferCoding, HTTPResponseContentCoding,
	HTTPResponseTimeout, HTTPUpgradeFailed, HTTPProtocolError,
	ProxyInternalResponse, ProxyInternalError, ProxyConfigurationError,
	ProxyLoopDetected,
}

// Types returns every error type of RFC 9209 section 2.3, in the RFC's
// order, as a new slice the caller may keep.
func Types() []string {
	return append([]string(nil), types[:]...)
}
