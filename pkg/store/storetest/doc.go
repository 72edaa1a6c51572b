// Package storetest is the conformance suite every store.Store backend must
// pass, in the spirit of go-containerregistry's validate package.
package storetest
