package lifecycle

// ErrNoShared is errNoShared, for the external tests.
var ErrNoShared = errNoShared
