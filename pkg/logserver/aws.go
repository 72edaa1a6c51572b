package logserver

import (
	"fmt"
	"strings"
)

// AWSConfig says where a log on Tessera's AWS driver is kept: a
// MySQL-compatible database (MariaDB, MySQL, Aurora) that sequences the
// entries of every replica, and an S3-compatible bucket that holds the
// tiles, entry bundles and checkpoint. pkg/logserver/awslog opens it; this
// package only describes it, so that the binaries that do not serve such a
// log do not link the AWS SDK.
type AWSConfig struct {
	// DSN is the database's go-sql-driver/mysql DSN
	// (user:password@tcp(host:3306)/db). It holds a password: it is never
	// printed (Redacted prints it without).
	DSN string
	// Bucket is the S3 bucket; Prefix, if set, is prepended to every
	// object name (several logs in one bucket).
	Bucket, Prefix string
	// Endpoint, if set, is the S3 endpoint (an S3-compatible server:
	// http://127.0.0.1:8333); Region defaults to us-east-1.
	Endpoint, Region string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key)
	// instead of a host name, as most S3-compatible servers need.
	PathStyle bool
}

// Validate says what is missing.
func (c AWSConfig) Validate() error {
	switch {
	case c.DSN == "":
		return fmt.Errorf("aws storage: no MySQL DSN")
	case c.Bucket == "":
		return fmt.Errorf("aws storage: no S3 bucket")
	}
	return nil
}

// Redacted is the DSN without its password.
func (c AWSConfig) Redacted() string { return RedactDSN(c.DSN) }

// String names the storage without secrets.
func (c AWSConfig) String() string {
	s := fmt.Sprintf("aws: MySQL %s, S3 bucket %s", c.Redacted(), c.Bucket)
	if c.Prefix != "" {
		s += "/" + c.Prefix
	}
	if c.Endpoint != "" {
		s += ", endpoint " + c.Endpoint
	}
	return s
}

// RedactDSN removes the password from a go-sql-driver/mysql DSN
// ([user[:password]@][net[(addr)]]/dbname[?params]): the password is
// everything between the first ':' and the last '@' before the '/'.
func RedactDSN(dsn string) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		slash = len(dsn)
	}
	at := strings.LastIndex(dsn[:slash], "@")
	if at < 0 {
		return dsn
	}
	user, _, hasPass := strings.Cut(dsn[:at], ":")
	if !hasPass {
		return dsn
	}
	return user + ":***" + dsn[at:]
}

// scrub removes the DSN's password from an error message.
func (c AWSConfig) scrub(msg string) string {
	if p := dsnPassword(c.DSN); p != "" {
		msg = strings.ReplaceAll(msg, p, "***")
	}
	return msg
}

func dsnPassword(dsn string) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		slash = len(dsn)
	}
	at := strings.LastIndex(dsn[:slash], "@")
	if at < 0 {
		return ""
	}
	_, p, _ := strings.Cut(dsn[:at], ":")
	return p
}

// ScrubError is err with the DSN's password removed from its message (it
// keeps err's chain for errors.Is).
func (c AWSConfig) ScrubError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s := c.scrub(msg); s != msg {
		return &scrubbed{msg: s, err: err}
	}
	return err
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }
