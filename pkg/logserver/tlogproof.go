package logserver

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
)

// TLogProof is a's proof as a C2SP tlog-proof file (c2sp.org/tlog-proof@v1:
// the index, the inclusion hashes and the checkpoint). The entry it proves
// is the record (Answer.Record), which the verifier must hold.
func TLogProof(a Answer) []byte {
	var b bytes.Buffer
	b.WriteString("c2sp.org/tlog-proof@v1\n")
	fmt.Fprintf(&b, "index %d\n", a.Index)
	for _, h := range a.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(a.Checkpoint)
	return b.Bytes()
}

// ParseTLogProof reads a C2SP tlog-proof file: the index, the inclusion
// hashes and the checkpoint (unverified; see tlog.VerifyInclusionProof).
func ParseTLogProof(raw []byte) (index uint64, hashes [][]byte, checkpoint []byte, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: tlog-proof: %s", ErrDocument, fmt.Sprintf(format, args...))
	}
	head, cp, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		return 0, nil, nil, bad("no blank line before the checkpoint")
	}
	lines := bytes.Split(head, []byte("\n"))
	if len(lines) < 2 || string(lines[0]) != "c2sp.org/tlog-proof@v1" {
		return 0, nil, nil, bad("first line is not c2sp.org/tlog-proof@v1")
	}
	rest := lines[1:]
	if bytes.HasPrefix(rest[0], []byte("extra ")) {
		rest = rest[1:]
	}
	if len(rest) == 0 || !bytes.HasPrefix(rest[0], []byte("index ")) {
		return 0, nil, nil, bad("no index line")
	}
	num := string(rest[0][len("index "):])
	if index, err = strconv.ParseUint(num, 10, 64); err != nil || strconv.FormatUint(index, 10) != num {
		return 0, nil, nil, bad("index %.30q", num)
	}
	if len(rest)-1 > 64 {
		return 0, nil, nil, bad("%d hashes", len(rest)-1)
	}
	for _, l := range rest[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(string(l))
		if err != nil || len(h) != 32 {
			return 0, nil, nil, bad("hash line %.60q", l)
		}
		hashes = append(hashes, h)
	}
	return index, hashes, cp, nil
}
