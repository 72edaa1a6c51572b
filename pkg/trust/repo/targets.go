package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stepseal/stepseal/pkg/signing"
)

// TargetsDir is the directory, inside a repository and inside a published
// copy, that holds the target files in TUF's consistent layout:
// <dir>/<sha256>.<name> for the target path <dir>/<name>.
const TargetsDir = "targets"

// TargetFileName is where a target file of path and sha256 (hex) lives
// under TargetsDir.
func TargetFileName(p, sha string) string {
	dir, name := path.Split(p)
	return dir + sha + "." + name
}

// AddTargetFile stores data as the file of target path p, under its
// content address, if a role of the current state lists p with data's
// sha256 and length; otherwise it is refused (ErrNotListed) and nothing is
// written. Adding the same file again is a no-op. Run it after Accept of
// the release that lists the file.
func (r *Repo) AddTargetFile(p string, data []byte) error {
	if err := CheckTargetPath(p); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	var listedBy []string
	for _, role := range sortedRoles(r.st) {
		md := r.st.roles[role]
		if md == nil {
			continue
		}
		tf, ok := md.Signed.Targets[p]
		if !ok || tf == nil {
			continue
		}
		if tf.Length == int64(len(data)) && strings.EqualFold(hex.EncodeToString(tf.Hashes["sha256"]), sha) {
			dst := filepath.Join(r.dir, TargetsDir, filepath.FromSlash(TargetFileName(p, sha)))
			if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
				return nil
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return signing.WriteFileAtomic(dst, data, 0o644)
		}
		listedBy = append(listedBy, fmt.Sprintf("%s v%d (%d bytes, sha256 %s)", role, md.Signed.Version, tf.Length, hex.EncodeToString(tf.Hashes["sha256"])))
	}
	detail := fmt.Sprintf("no role lists it with %d bytes and sha256 %s", len(data), sha)
	if len(listedBy) > 0 {
		detail += "; listed by " + strings.Join(listedBy, ", ")
	}
	return &Error{Kind: ErrNotListed, Path: p, Detail: detail}
}

// hostedTarget is a target file the repository hosts and still lists.
type hostedTarget struct {
	name, file, sha string
}

// hostedTargets are the files under TargetsDir that a role of the current
// state lists, sorted by name.
func (r *Repo) hostedTargets() []hostedTarget {
	seen := map[string]bool{}
	var out []hostedTarget
	for _, md := range r.st.roles {
		if md == nil {
			continue
		}
		for p, tf := range md.Signed.Targets {
			if tf == nil {
				continue
			}
			sha := hex.EncodeToString(tf.Hashes["sha256"])
			n := TargetFileName(p, sha)
			file := filepath.Join(r.dir, TargetsDir, filepath.FromSlash(n))
			if seen[n] {
				continue
			}
			if _, err := os.Stat(file); err == nil {
				seen[n] = true
				out = append(out, hostedTarget{name: n, file: file, sha: sha})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// publishTargets copies the target files still listed by the current
// state to dst/TargetsDir, each by atomic rename; a file already there
// with other bytes is an error (content addresses never change).
func (r *Repo) publishTargets(dst string) ([]string, error) {
	var done []string
	for _, h := range r.hostedTargets() {
		n := h.name
		data, err := os.ReadFile(h.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, err
		}
		out := filepath.Join(dst, TargetsDir, filepath.FromSlash(n))
		old, err := os.ReadFile(out)
		switch {
		case err == nil && bytes.Equal(old, data):
			continue
		case err == nil:
			return nil, &Error{Kind: ErrPublished, Path: out, Detail: "a published target file is never rewritten"}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return nil, err
		}
		if err := signing.WriteFileAtomic(out, data, 0o644); err != nil {
			return nil, err
		}
		done = append(done, path.Join(TargetsDir, n))
	}
	return done, nil
}
