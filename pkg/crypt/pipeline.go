package crypt

import (
	"context"
	"errors"
	"io"
	"sync"
)

// chunkSize and the pipeline depth bound memory: a stream holds at most
// (stages+3) chunks whatever the layer size.
const chunkSize = 1 << 20

type chunk struct {
	buf []byte
	n   int
}

// pipeline streams src through stages, each in its own goroutine, in
// chunkSize pieces: a stage works on chunk k while the next works on chunk
// k-1, so hashing and encryption of one stream use both cores. Stages see
// every byte in order; a stage may transform a chunk in place. The reader
// gets the last stage's output; onEOF runs once all stages have seen the
// end, and its error (or io.EOF) ends the stream.
type pipeline struct {
	cancel context.CancelFunc
	ctx    context.Context
	src    io.Closer
	out    chan chunk
	free   chan []byte
	wg     sync.WaitGroup

	mu  sync.Mutex
	err error

	cur   chunk
	off   int
	done  bool
	final error
	onEOF func() error
}

func newPipeline(ctx context.Context, src io.ReadCloser, stages []func([]byte) error, onEOF func() error) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	p := &pipeline{ctx: ctx, cancel: cancel, src: src, onEOF: onEOF, free: make(chan []byte, len(stages)+3)}
	for range cap(p.free) {
		p.free <- make([]byte, chunkSize)
	}
	in := make(chan chunk, 1)
	p.wg.Add(1)
	go p.read(src, in)
	for _, f := range stages {
		next := make(chan chunk, 1)
		p.wg.Add(1)
		go p.stage(f, in, next)
		in = next
	}
	p.out = in
	return p
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel()
}

func (p *pipeline) send(out chan<- chunk, c chunk) bool {
	select {
	case out <- c:
		return true
	case <-p.ctx.Done():
		return false
	}
}

func (p *pipeline) read(src io.Reader, out chan<- chunk) {
	defer p.wg.Done()
	defer close(out)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.ctx.Done():
			p.fail(p.ctx.Err())
			return
		}
		n, err := io.ReadFull(src, buf)
		if n > 0 && !p.send(out, chunk{buf, n}) {
			p.fail(p.ctx.Err())
			return
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return
		case err != nil:
			p.fail(err)
			return
		}
	}
}

func (p *pipeline) stage(f func([]byte) error, in <-chan chunk, out chan<- chunk) {
	defer p.wg.Done()
	defer close(out)
	for c := range in {
		if err := f(c.buf[:c.n]); err != nil {
			p.fail(err)
			return
		}
		if !p.send(out, c) {
			p.fail(p.ctx.Err())
			return
		}
	}
}

func (p *pipeline) Read(b []byte) (int, error) {
	if p.done {
		return 0, p.final
	}
	if p.off == p.cur.n {
		if p.cur.buf != nil {
			p.free <- p.cur.buf
			p.cur = chunk{}
		}
		c, ok := <-p.out
		if !ok {
			p.wg.Wait()
			p.done = true
			p.mu.Lock()
			p.final = p.err
			p.mu.Unlock()
			if p.final == nil {
				p.final = p.onEOF()
			}
			if p.final == nil {
				p.final = io.EOF
			}
			p.cancel()
			return 0, p.final
		}
		p.cur, p.off = c, 0
	}
	n := copy(b, p.cur.buf[p.off:p.cur.n])
	p.off += n
	return n, nil
}

// Close stops the stages and closes the source. It does not wait for a
// source read in progress.
func (p *pipeline) Close() error {
	p.cancel()
	if !p.done {
		p.done, p.final = true, errors.New("read after close")
	}
	return p.src.Close()
}
