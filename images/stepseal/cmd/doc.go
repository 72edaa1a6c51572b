// Package cmd holds the cobra commands of the stepseal CLI. Commands are thin:
// they parse flags, call pkg/..., and print a human report or, with
// --output json, a JSON document scripts can parse.
package cmd
