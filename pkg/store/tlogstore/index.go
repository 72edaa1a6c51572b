package tlogstore

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// indexLine is one line of the index file: which log entry holds which
// record, with the fields queries filter on. One line per log entry, in any
// order (concurrent Puts finish out of order); the log is the authority and
// a line only says where to look.
type indexLine struct {
	I        uint64   `json:"i"`
	Digest   string   `json:"digest"`
	Kind     string   `json:"kind"`
	RunID    string   `json:"runID,omitempty"`
	Subjects []string `json:"subjects"`
}

// lineOf is the line of log entry i, record r, whose subjects (checked
// against r) are subjects.
func lineOf(i uint64, r record, subjects []string) indexLine {
	if subjects == nil {
		subjects = []string{}
	}
	return indexLine{I: i, Digest: r.Digest, Kind: r.Kind, RunID: r.RunID, Subjects: subjects}
}

func (l indexLine) encode() []byte {
	b, _ := json.Marshal(l) // strings and a number: cannot fail
	return append(b, '\n')
}

// parseIndexLine decodes one line (without its newline).
func parseIndexLine(b []byte) (indexLine, error) {
	var l indexLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, fmt.Errorf("index line: %w", err)
	}
	if dec.More() {
		return l, fmt.Errorf("index line: trailing data")
	}
	if err := checkFields(l.Kind, l.Digest, l.Subjects); err != nil {
		return l, fmt.Errorf("index line %d: %w", l.I, err)
	}
	return l, nil
}

// splitIndex splits an index file into parsed lines. A last line without its
// newline (a torn write) and lines that do not parse are dropped and
// reported as damaged: the log fills the gaps.
func splitIndex(b []byte) (lines []indexLine, damaged bool) {
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return lines, true
		}
		l, err := parseIndexLine(b[:nl])
		if err != nil {
			damaged = true
		} else {
			lines = append(lines, l)
		}
		b = b[nl+1:]
	}
	return lines, damaged
}
