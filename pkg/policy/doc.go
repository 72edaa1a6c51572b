// Package policy holds stepseal's platform decryption policy: which platforms
// (a name, an RSA or EC public key, labels) may decrypt which artifacts, and
// whether those artifacts must be encrypted. A policy is a YAML/JSON document
// or a DSSE envelope signed by the policy owners; Parse takes the bytes as they
// were distributed (a file today, a TUF target later) and Rule answers, fail
// closed, which platforms one repository reference is encrypted to.
package policy
