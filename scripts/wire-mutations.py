#!/usr/bin/env python3
# Mutation check for internal/wire (issue 14): applies each deliberate bug
# alone, runs the package's tests, restores the file, and prints whether
# the suite caught it. Usage: scripts/wire-mutations.py [mutation name...]
import os, subprocess, sys, re
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "internal", "wire"))
muts = [
 ("space before colon accepted", "field.go", "for j < end && tchar[b[j]] {", "for j < end && (tchar[b[j]] || b[j] == ' ') {"),
 ("obs-fold accepted", "field.go", "case j < end && isOWS(b[i]):", "case false:"),
 ("ctl in value accepted", "field.go", "if !valueByte(b[k]) {", "if b[k] == 0xff {"),
 ("head end: no bare LF LF", "headend.go", "if i+1 < len(buf) && buf[i+1] == '\\n' {", "if false {"),
 ("head end: resume past the pending LF", "headend.go", "	s.seen = i\n", "	s.seen = len(buf)\n"),
 ("head end: limit off by one", "headend.go", "if n > limit {", "if n >= limit {"),
 ("chunk size with leading +", "chunked.go", "	if s.digits == 0 {\n		return s.err(\"chunk size\")", "	if s.digits == 0 && c == '+' {\n		return nil\n	}\n	if s.digits == 0 {\n		return s.err(\"chunk size\")"),
 ("no CRLF after chunk data", "chunked.go", "		s.state = stDataCR\n", "		s.state, s.size, s.digits, s.lineLen = stSize, 0, 0, 0\n"),
 ("LF after data not checked", "chunked.go", "		if c != '\\n' {\n			return s.err(\"chunk data end\")", "		if false {\n			return s.err(\"chunk data end\")"),
 ("17 hex digits accepted", "chunked.go", "s.digits > 16", "s.digits > 17"),
 ("space before chunk ext accepted", "chunked.go", "			// net/http trims whitespace after the size only at the end\n			// of the line: \"5 ;ext\" is malformed.\n			return s.err(\"chunk-size line\")", "			s.state = stExt"),
 ("ctl in chunk ext accepted", "chunked.go", "		case !valueByte(c):\n			return s.err(\"chunk extension\")", "		case c == 0:\n			return s.err(\"chunk extension\")"),
 ("bare LF after chunk size", "chunked.go", "		return s.err(\"chunk-size line (bare lf)\")", "		return s.endSizeLine()"),
 ("no framing-overhead bound", "chunked.go", "if s.excess > maxExcess {", "if false {"),
 ("chunk line limit off", "chunked.go", "s.lineLen > maxChunkLine", "s.lineLen > maxChunkLine+1"),
 ("data miscounted (one byte short)", "chunked.go", "	s.state = stData\n	return nil", "	s.size--\n	s.state = stData\n	return nil"),
 ("trailer bare LF accepted", "trailer.go", "		case c == '\\n' && (len(t) == 0 || t[len(t)-1] != '\\r'):", "		case false:"),
 ("trailer limit ignored", "trailer.go", "		case len(t) >= limit:", "		case false:"),
 ("If-* allowed in trailers", "trailer.go", "lower(name[1]) == 'f' && name[2] == '-'", "lower(name[1]) == 'f' && name[2] == '_'"),
 ("AppendTrailer keeps all", "trailer.go", "		if keep(f.Name.In(raw)) {", "		if true {"),
 ("CL miscounted", "framing.go", "n = n*10 + uint64(c-'0')", "n = n*10 + uint64(c-'0') + 1"),
 ("CL with sign accepted", "framing.go", "if c < '0' || c > '9' || n > (1<<63-1)/10 {", "if c == '+' {\n			continue\n		}\n		if c < '0' || c > '9' || n > (1<<63-1)/10 {"),
 ("differing CLs accepted", "framing.go", "if nCL > 0 && string(f.Value.In(b)) != string(cl.In(b)) {", "if false {"),
 ("CL overflow accepted", "framing.go", "		if n >= 1<<63 {", "		if n >= 1<<64-1 {"),
 ("TE list with chunked accepted", "framing.go", "!EqualFold(te.In(b), \"chunked\")", "!HasToken(te.In(b), \"chunked\")"),
 ("two TE fields accepted", "framing.go", "} else if nTE > 1 ||", "} else if nTE > 2 ||"),
 ("HTTP/1.0 TE honoured", "framing.go", "		if minor == 0 {\n			t.TEIgnored = true\n		} else", "		if false {\n		} else"),
 ("CLAndTE not flagged", "framing.go", "t.CLAndTE = nCL > 0", "t.CLAndTE = false"),
 ("declared Trailer: Content-Length accepted", "framing.go", "	if t.Framing == BodyChunked && t.Trailer {", "	if false {"),
 ("HTTP/1.0 keep-alive ignored", "framing.go", "	if minor == 0 && !keepAlive {", "	if minor == 0 {"),
 ("missing Host accepted", "request.go", "	case nHost == 0 && h.Minor >= 1 && string(h.Method.In(b)) != \"CONNECT\":", "	case false:"),
 ("two Hosts accepted", "request.go", "	case nHost > 1:", "	case nHost > 2:"),
 ("bad Host bytes accepted", "request.go", "	case nHost == 1 && !allHostBytes(h.Host.In(b)):", "	case false:"),
 ("HTTP/2.0 request accepted", "request.go", "	if v[5] != '1' {", "	if v[5] == '0' {"),
 ("method not checked", "request.go", "if sp1 == 0 || !allTchar(b[:sp1]) {", "if sp1 == 0 {"),
 ("bytes after the head accepted", "request.go", "	if end != len(b) {\n		return syntaxErr(\"head end (bytes after the empty line)\", end)\n	}\n	if err := h.checkHostExpect", "	if end < 0 {\n		return nil\n	}\n	if err := h.checkHostExpect"),
 ("percent-encoding not checked", "target.go", "if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {", "if i+2 > len(p) {"),
 ("ctl in target accepted", "target.go", "if c < 0x20 || c == 0x7f {", "if c == 0 {"),
 ("relative target accepted", "target.go", "	if colon <= 0 {", "	if colon < 0 {\n		h.Form = OriginForm\n		return nil\n	}\n	if colon == 0 {"),
 ("port not checked", "target.go", "			if !allDigits(a[i+1:]) {", "			if false {"),
 ("204 has a body", "response.go", "h.Status == 204 || ", ""),
 ("HEAD response has a body", "response.go", "case head || h.Status/100 == 1", "case h.Status/100 == 1"),
 ("signed status accepted", "response.go", "!isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0'", "code[0] == '-'"),
 ("close-delimited not closing", "response.go", "h.Framing, h.Close = BodyClose, true", "h.Framing = BodyClose"),
]
only = sys.argv[1:] 
for name, f, old, new in muts:
    if only and name not in only: continue
    src = open(f).read()
    if src.count(old) != 1:
        print(f"SKIP {name}: pattern count {src.count(old)}"); continue
    open(f, 'w').write(src.replace(old, new))
    try:
        r = subprocess.run(["go", "test", "-count=1", "."], capture_output=True, text=True, timeout=300)
        fails = sorted(set(re.findall(r"--- FAIL: (\S+)", r.stdout)))
        top = [x for x in fails if "/" not in x]
        sub = [x for x in fails if "/" in x][:3]
        status = "CAUGHT" if r.returncode != 0 else "MISSED"
        if r.returncode != 0 and not fails:
            top = [r.stdout.strip().splitlines()[-1][:100] if r.stdout.strip() else r.stderr[:200]]
        print(f"{status} | {name} | {f} | {', '.join(top)} | {', '.join(sub)}", flush=True)
    finally:
        open(f, 'w').write(src)
