package service

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/tlsconfig"
)

// Command is the frame every service binary shares: the common flags
// (ops listener, logging, TLS), their P2PD_* environment variables, -h
// and --version, and exit codes (flagenv.Report). A binary's main.go adds
// its own flags to Flags and hands the rest to its service's Serve.
type Command struct {
	name   string
	fs     *flag.FlagSet
	common Common
	tls    tlsconfig.Flags
}

// NewCommand returns the frame of service name, its ops listener on
// opsDefault.
func NewCommand(name, usage, opsDefault string) *Command {
	c := &Command{name: name, fs: flagenv.NewFlagSet(name)}
	c.common.Register(c.fs, opsDefault)
	c.tls.Register(c.fs)
	c.fs.Usage = flagenv.Usage(c.fs, usage)
	return c
}

// Flags is the flag set the binary adds its flags to.
func (c *Command) Flags() *flag.FlagSet { return c.fs }

// Env is what the common flags give a service.
type Env struct {
	Log *slog.Logger
	TLS *tlsconfig.Creds
	Ops string // the ops listener's address, empty for none
}

// Main parses the command line (os.Args and the environment) and runs run
// with a context cancelled on SIGINT or SIGTERM, then exits as
// flagenv.Report says: 0, 1 for a failure, 2 for a command line that
// cannot run (run returns flagenv.Usagef for its own checks).
func (c *Command) Main(run func(ctx context.Context, env *Env) error) {
	os.Exit(flagenv.Report(os.Stdout, os.Stderr, c.name, c.run(os.Args[1:], run)))
}

func (c *Command) run(args []string, run func(ctx context.Context, env *Env) error) error {
	if err := flagenv.Parse(c.fs, args); err != nil {
		return err
	}
	log, err := c.common.Logger(c.name)
	if err != nil {
		return err
	}
	creds, err := c.tls.Load()
	if err != nil {
		return err
	}
	ctx, stop := SignalContext()
	defer stop()
	return run(ctx, &Env{Log: log, TLS: creds, Ops: c.common.Ops})
}
