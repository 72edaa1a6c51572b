package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stepseal/stepseal/internal/kubetest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cluster DIR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := kubetest.Launch(ctx, kubetest.Options{Dir: os.Args[1], Detach: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube cluster:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kube cluster ready in %v; logs in %s\n", time.Since(start).Round(time.Millisecond), c.Dir())
	fmt.Println(c.Kubeconfig())
}
