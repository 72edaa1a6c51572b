package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process runs argv as a host process in its own process group, copying
// its output to stdout and stderr. The whole group is killed when ctx ends
// and once the main process has exited, so nothing a step started outlives
// it. exit is the exit status (128+n for signal n, -1 if it never started).
func Process(ctx context.Context, argv []string, dir string, env []string, stdout, stderr io.Writer) (exit int, err error) {
	if len(argv) == 0 {
		return -1, errors.New("empty command")
	}
	path, err := LookPath(argv[0], env)
	if err != nil {
		return -1, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return -1, err
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return -1, err
	}
	var wg sync.WaitGroup
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{outR, stdout}, {errR, stderr}} {
		wg.Go(func() { io.Copy(c.w, c.r) })
	}
	waitErr := cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		// A process that left the group still holds the pipes: stop reading.
		outR.Close()
		errR.Close()
		<-done
	}
	outR.Close()
	errR.Close()
	exit = -1
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			exit = ws.ExitStatus()
		case ws.Signaled():
			exit = 128 + int(ws.Signal())
		}
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		waitErr = nil // the exit status says it all
	}
	return exit, waitErr
}

// LookPath finds file in the PATH of the step's environment, as the
// container runtime would in the image; relative PATH entries are ignored.
func LookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v // the last one wins, as in the process
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in the step's PATH", file, exec.ErrNotFound)
}
