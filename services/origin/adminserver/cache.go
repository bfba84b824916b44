package adminserver

import (
	"context"
	"errors"
	"net/http"
	"slices"

	adminv1 "github.com/p2pd/p2pd/gen/admin/v1"
	trackerv1 "github.com/p2pd/p2pd/gen/tracker/v1"
	"github.com/p2pd/p2pd/internal/manifest"
	"google.golang.org/grpc/codes"
)

// Prewarm and purge are commands for the nodes: the API records them at
// the tracker (PostCommand), every cachenode and edge follows the
// trackers' commands (WatchCommands) and carries out those meant for it.
// Nodes announce what they hold, so GetFile's holders show the progress.

// PrewarmFile has the chosen cachenodes fetch a published file in full.
func (s *Server) PrewarmFile(ctx context.Context, req *adminv1.PrewarmFileRequest) (*adminv1.PrewarmFileResponse, error) {
	m, err := s.commandFile(req.Name)
	if err != nil {
		return nil, err
	}
	chosen := 0
	for _, given := range []bool{req.All, len(req.NodeIds) > 0, len(req.Regions) > 0} {
		if given {
			chosen++
		}
	}
	if chosen != 1 {
		return nil, errInvalid(`prewarm %s: choose the cachenodes with one of "all": true, "nodeIds": [...] or "regions": [...] (GET /v1/nodes lists them)`, req.Name)
	}
	v, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	live := v.cachenodes()
	sel := &trackerv1.NodeSelector{All: req.All, Regions: req.Regions}
	targets := live
	if len(req.Regions) > 0 {
		targets = v.cachenodesIn(req.Regions)
	} else if !req.All {
		targets = nil
		for _, id := range req.NodeIds {
			if !slices.Contains(live, id) {
				return nil, newError(CodeUnknownNode, http.StatusBadRequest, codes.InvalidArgument, nil,
					"prewarm %s: %q is not a live cachenode (GET /v1/nodes lists them)", req.Name, id)
			}
			if !slices.Contains(targets, id) {
				targets = append(targets, id)
			}
		}
		sel.NodeIds = targets
	}
	c, err := s.postCommand(ctx, trackerv1.CommandAction_COMMAND_ACTION_PREWARM, m, sel)
	if err != nil {
		return nil, err
	}
	s.log.Info("prewarm posted", "name", m.Name, "root", m.Root, "nodes", targets, "command", c.Id)
	return &adminv1.PrewarmFileResponse{File: fileOf(m), NodeIds: targets, CommandId: c.Id}, nil
}

// PurgeFile drops a published file from every cachenode and edge.
func (s *Server) PurgeFile(ctx context.Context, req *adminv1.PurgeFileRequest) (*adminv1.PurgeFileResponse, error) {
	m, err := s.commandFile(req.Name)
	if err != nil {
		return nil, err
	}
	v, err := s.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	var held []string
	for _, h := range v.holders(m.Root) {
		if h.Role == roleName(trackerv1.Role_ROLE_CACHENODE) {
			held = append(held, h.NodeId)
		}
	}
	c, err := s.postCommand(ctx, trackerv1.CommandAction_COMMAND_ACTION_PURGE, m, &trackerv1.NodeSelector{All: true})
	if err != nil {
		return nil, err
	}
	s.log.Info("purge posted", "name", m.Name, "root", m.Root, "holders", held, "command", c.Id)
	return &adminv1.PurgeFileResponse{File: fileOf(m), NodeIds: held, CommandId: c.Id}, nil
}

// commandFile returns the published file a command is about.
func (s *Server) commandFile(name string) (*manifest.Manifest, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m, ok := s.origin.Lookup(name)
	if !ok {
		return nil, errNotPublished(name)
	}
	if s.tracker == nil {
		return nil, errTracker(errors.New("this origin runs without a tracker"), "command for "+name)
	}
	return m, nil
}

// postCommand records a command for the nodes at the tracker.
func (s *Server) postCommand(ctx context.Context, action trackerv1.CommandAction, m *manifest.Manifest, sel *trackerv1.NodeSelector) (*trackerv1.Command, error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.PostCommand(tctx, &trackerv1.PostCommandRequest{Command: &trackerv1.Command{
		Action: action, Root: m.Root[:], Name: m.Name, Nodes: sel,
	}})
	if err != nil {
		return nil, errTracker(err, "record the command for "+m.Name)
	}
	return resp.Command, nil
}

// purgeUnpublished drops an unpublished version from every node's disk
// and memory at once, unless another published name still has the same
// bytes. Without it the cachenodes would drop it at their next sweeps
// (within half a minute) and could serve it from memory meanwhile. A
// failure is only logged: the sweeps still drop it.
func (s *Server) purgeUnpublished(ctx context.Context, name string, root manifest.Digest) {
	if s.tracker == nil {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TrackerTimeout)
	defer cancel()
	resp, err := s.tracker.ListFiles(tctx, &trackerv1.ListFilesRequest{})
	if err != nil {
		s.log.Warn("unpublished; not purged (cachenodes drop it within half a minute)", "name", name, "err", err)
		return
	}
	for _, f := range resp.Files {
		if r, err := manifest.DigestFromBytes(f.Root); err == nil && r == root && f.Name != name {
			return // the same bytes are published under another name
		}
	}
	m := &manifest.Manifest{Name: name, Root: root}
	if _, err := s.postCommand(ctx, trackerv1.CommandAction_COMMAND_ACTION_PURGE, m, &trackerv1.NodeSelector{All: true}); err != nil {
		s.log.Warn("unpublished; not purged (cachenodes drop it within half a minute)", "name", name, "err", err)
	}
}

// cachenodesIn lists the live cachenodes' ids of the given regions.
func (v nodeView) cachenodesIn(regions []string) []string {
	var ids []string
	for _, n := range v.nodes {
		if n.Role == trackerv1.Role_ROLE_CACHENODE && slices.Contains(regions, n.Region) {
			ids = append(ids, n.Id)
		}
	}
	return ids
}

// cachenodes lists the live cachenodes' ids.
func (v nodeView) cachenodes() []string {
	var ids []string
	for _, n := range v.nodes {
		if n.Role == trackerv1.Role_ROLE_CACHENODE {
			ids = append(ids, n.Id)
		}
	}
	return ids
}
