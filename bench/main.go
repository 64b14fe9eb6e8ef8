// Command bench runs Mutuo's benchmarks. Each benchmark is a subcommand:
//
//	go run ./bench query [flags]     the marketplace query against hand-written SQL
//	go run ./bench help [command]    list the benchmarks, or one's flags
//
// Every benchmark creates its own database (from BENCH_DATABASE_ADMIN_URL,
// default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable),
// seeds it, starts the server in-process (Redis from BENCH_REDIS_URL, else
// REDIS_URL, else redis://127.0.0.1:6379/0, under a key prefix of its own),
// and drops the database at the end unless -keep. As DESIGN.md asks, each
// reports its figures next to a baseline measured in the same run.
//
// A new benchmark is a file that calls register from an init function; the
// shared pieces are in env.go (database, in-process server, statement
// counter, GraphQL client), load.go (the fixed-concurrency load driver and
// latency percentiles), cpu.go (CPU per request of this process and of the
// database's backends) and seed.go (the marketplace dataset).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one benchmark.
type command struct {
	name    string
	summary string
	// run parses args with fs (already named after the command) and runs.
	run func(ctx context.Context, fs *flag.FlagSet, args []string) error
}

var commands = map[string]command{}

// register adds a subcommand; benchmarks call it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("bench: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: go run ./bench <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\n`go run ./bench <command> -h` lists a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		if len(args) > 0 {
			if c, ok := commands[args[0]]; ok {
				fs := flag.NewFlagSet(c.name, flag.ExitOnError)
				_ = c.run(context.Background(), fs, []string{"-h"})
				return
			}
		}
		usage()
		return
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown command %q\n\n", name)
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	err := c.run(ctx, fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", c.name, err)
		os.Exit(1)
	}
}
