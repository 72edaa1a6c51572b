package main

import "fmt"

var version = "dev"

// Greeting is what hello prints.
func Greeting(name string) string { return "hello, " + name }

func main() {
	fmt.Println(Greeting("world"), version)
}
