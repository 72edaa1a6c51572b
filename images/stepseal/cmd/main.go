package cmd

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// Main runs the stepseal command line of this process and exits with its
// status. t implements `stepseal run` and `stepseal layout create` (nil:
// they exec TektonBinary); both binaries share everything else, so they
// print, exit and handle signals alike.
func Main(t Tekton, opts ...Option) {
	// Libraries below (Tessera, client-go) log through klog; the CLI reports
	// through its own output and errors.
	klog.SetLogger(logr.Discard())
	// The first SIGINT or SIGTERM cancels the command's context, so that it
	// stops its steps and removes what it half wrote; a second one exits at
	// once. Either way the exit status is 128 + the signal's number (130,
	// 143), as a shell reports a process the signal killed.
	ctx, cancel := context.WithCancel(context.Background())
	var got atomic.Value
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		got.Store(s)
		cancel()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "stepseal: %s again: exiting now\n", sigName(s))
		os.Exit(exitStatus(s))
	}()
	err := New(t, os.Args[1:], opts...).ExecuteContext(ctx)
	signal.Stop(sigs)
	if s, ok := got.Load().(os.Signal); ok {
		msg := "interrupted by " + sigName(s)
		if err != nil && !IsReported(err) {
			msg += ": " + OneLine(err)
		}
		fmt.Fprintln(os.Stderr, "stepseal:", msg)
		os.Exit(exitStatus(s))
	}
	if err != nil {
		if !IsReported(err) {
			fmt.Fprintln(os.Stderr, "stepseal:", OneLine(err))
		}
		os.Exit(ExitCode(err))
	}
}

func exitStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

func sigName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}
