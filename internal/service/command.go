package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/p2pd/p2pd/internal/flagenv"
	"github.com/p2pd/p2pd/internal/tlsconfig"
)

// Command is the frame every service binary shares: the common flags
// (ops listener, logging, TLS), their P2PD_* environment variables, and
// -h. A binary's main.go adds its own flags to Flags and hands the rest to
// its service's Serve.
type Command struct {
	name   string
	fs     *flag.FlagSet
	common Common
	tls    tlsconfig.Flags
}

// NewCommand returns the frame of service name, its ops listener on
// opsDefault, -h printing usage.
func NewCommand(name, usage, opsDefault string) *Command {
	c := &Command{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
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

// Parse parses args and the environment. It returns nil and no error when
// -h printed the usage, so the binary exits 0.
func (c *Command) Parse(args []string) (*Env, error) {
	if err := flagenv.Parse(c.fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	log, err := c.common.Logger(c.name)
	if err != nil {
		return nil, err
	}
	creds, err := c.tls.Load()
	if err != nil {
		return nil, err
	}
	return &Env{Log: log, TLS: creds, Ops: c.common.Ops}, nil
}

// Usage prints the usage and returns err: for flags that are missing or
// wrong together.
func (c *Command) Usage(err error) error {
	c.fs.Usage()
	return err
}

// Main parses the command line (os.Args) and runs run with a context
// cancelled on SIGINT or SIGTERM. A failure is printed as "NAME: error"
// and exits 1; -h exits 0.
func (c *Command) Main(run func(ctx context.Context, env *Env) error) {
	err := c.run(os.Args[1:], run)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", c.name, err)
		os.Exit(1)
	}
}

func (c *Command) run(args []string, run func(ctx context.Context, env *Env) error) error {
	env, err := c.Parse(args)
	if env == nil {
		return err
	}
	ctx, stop := SignalContext()
	defer stop()
	return run(ctx, env)
}
