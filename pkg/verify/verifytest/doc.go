// Package verifytest generates signed in-toto supply chains of any size, in
// the shape stepseal's layouts have, for benchmarks and tests of
// verification (ours and in-toto-golang's) on the same files.
package verifytest
