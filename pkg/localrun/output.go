package localrun

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// progress serialises everything written to Options.Out: progress lines and
// the prefixed output of the step that is running.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// lines returns a writer that copies whole lines to the progress output,
// each prefixed with prefix. Close flushes a last unterminated line.
func (p *progress) lines(prefix string) *lineWriter {
	return &lineWriter{p: p, prefix: []byte(prefix)}
}

type lineWriter struct {
	p      *progress
	prefix []byte
	buf    []byte
}

// maxLine bounds what is buffered waiting for a newline, so a step printing
// megabytes without one cannot grow memory.
const maxLine = 64 << 10

func (l *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) < maxLine {
				return n, nil
			}
			i = len(l.buf) - 1
		}
		l.emit(l.buf[:i+1])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineWriter) emit(line []byte) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.p.w.Write(l.prefix)
	l.p.w.Write(line)
	if line[len(line)-1] != '\n' {
		l.p.w.Write([]byte{'\n'})
	}
}

// Close writes out a final line that had no newline.
func (l *lineWriter) Close() error {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
	return nil
}
