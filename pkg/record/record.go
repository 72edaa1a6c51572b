package record

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stepseal/stepseal/pkg/artifact"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Options configure Command.
type Options struct {
	// Step is the in-toto step name of the link.
	Step string
	// Signers each sign one link (at least one).
	Signers []signing.Signer
	// Materials and Products are files or directories, hashed before and
	// after Cmd runs and named exactly as `in-toto run` names them (see
	// artifact.HashPaths): a file by the path as given, a file inside a
	// directory PATH by filepath.Join(PATH, rel) in slash form. So
	// `--products .` records "main.go", `--products src` records
	// "src/main.go", an absolute PATH gives absolute names.
	Materials, Products []string
	// Exclude holds in-toto-run --exclude patterns, matched against those names.
	Exclude []string
	// FollowSymlinkDirs is in-toto-run's --follow-symlink-dirs.
	FollowSymlinkDirs bool
	// Cmd is the command to run; empty records materials and products
	// without running anything (in-toto-run's --no-command).
	Cmd []string
	// Env is the command's environment; nil inherits this process's.
	Env []string
	// OutDir receives "<step>.<keyid[:8]>.link"; empty: the current directory.
	OutDir string
	// Stdout and Stderr receive the command's output (as well as its
	// digests going into the link); nil discards it.
	Stdout, Stderr io.Writer
	// RunID, Pipeline and Image, when set, go into the link's environment
	// like the local runner's links, binding it to one run.
	RunID, Pipeline, Image string
}

// Command is stepseal's `in-toto run`: it hashes the materials, runs
// the command, hashes the products, and writes one signed link per signer
// to OutDir. A command exiting non-zero still gets its link (the exit code
// is in the byproducts), and Command returns the step together with a
// *StepError carrying the exit code; a command that cannot be started gets
// no link, as with in-toto-run.
//
// The link is an in-toto link in-toto-golang reads; unlike in-toto-run's it
// stores stdout and stderr as SHA-256 digests, not verbatim, and records no
// image-related note (the recorder runs inside the step's own image).
func Command(ctx context.Context, opts Options) (*run.Step, error) {
	if opts.Step == "" {
		return nil, errors.New("record: no step name")
	}
	if len(opts.Signers) == 0 {
		return nil, fmt.Errorf("record %s: no signing key", opts.Step)
	}
	outDir := opts.OutDir
	if outDir == "" {
		outDir = "."
	}
	if fi, err := os.Stat(outDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("record %s: output directory %s: not a directory", opts.Step, outDir)
	}
	hopts := artifact.Options{Exclude: opts.Exclude, FollowSymlinkDirs: opts.FollowSymlinkDirs}
	materials, err := artifact.HashPaths(ctx, opts.Materials, hopts)
	if err != nil {
		return nil, fmt.Errorf("record %s: materials: %w", opts.Step, err)
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	outHash, errHash := sha256.New(), sha256.New()
	stdout, stderr := io.Writer(outHash), io.Writer(errHash)
	if opts.Stdout != nil {
		stdout = io.MultiWriter(outHash, opts.Stdout)
	}
	if opts.Stderr != nil {
		stderr = io.MultiWriter(errHash, opts.Stderr)
	}
	start := time.Now().UTC()
	exit := 0
	var runErr error
	if len(opts.Cmd) > 0 {
		exit, runErr = Process(ctx, opts.Cmd, "", env, stdout, stderr)
		if exit == -1 && runErr != nil {
			return nil, fmt.Errorf("record %s: %w", opts.Step, runErr)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("record %s: interrupted: %w", opts.Step, ctx.Err())
		}
	}
	end := time.Now().UTC()
	products, err := artifact.HashPaths(ctx, opts.Products, hopts)
	if err != nil {
		return nil, fmt.Errorf("record %s: products: %w", opts.Step, err)
	}
	step := &run.Step{
		Name:       opts.Step,
		Image:      opts.Image,
		Command:    opts.Cmd,
		Materials:  materials,
		Products:   products,
		ExitCode:   exit,
		StartedAt:  start,
		FinishedAt: end,
		Stdout:     run.DigestSet{"sha256": hex.EncodeToString(outHash.Sum(nil))},
		Stderr:     run.DigestSet{"sha256": hex.EncodeToString(errHash.Sum(nil))},
	}
	link := attest.Link(&run.Record{RunID: opts.RunID, Pipeline: opts.Pipeline}, *step)
	delete(link.Environment, attest.EnvImageNote)
	for k, v := range map[string]string{attest.EnvRunID: opts.RunID, attest.EnvPipeline: opts.Pipeline, attest.EnvImage: opts.Image} {
		if v == "" {
			delete(link.Environment, k)
		}
	}
	if _, err := WriteLinks(ctx, outDir, link, opts.Signers); err != nil {
		return step, fmt.Errorf("record %s: %w", opts.Step, err)
	}
	if exit != 0 || runErr != nil {
		return step, &StepError{Step: opts.Step, ExitCode: exit, Err: runErr}
	}
	return step, nil
}
