// Package artifact hashes workspace files into in-toto materials and products.
//
// Hash walks one directory and records every regular file under a URI
// "<prefix>/<slash path>"; HashPaths records paths exactly as in-toto-golang's
// `in-toto run` names them. Files are streamed through SHA-256 by a bounded
// pool of workers, exclude patterns follow in-toto-run's gitignore-style
// semantics, and every read is confined to the root: a symlink that leaves it
// is an error, never followed.
package artifact
