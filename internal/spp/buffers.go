package spp

import "github.com/p2pd/p2pd/internal/bufpool"

// Buffers is the buffer pool of p2pd's gRPC servers and clients (see
// service.GRPCServerOptions) and of the chunks a node reads to send:
// internal/bufpool, whose ownership rule every user follows. gRPC fills
// every buffer it takes (a frame read in full, a message encoded) before
// anyone reads it, so its buffers are not zeroed.
var Buffers = &bufpool.Pool{}
