// Package charttest checks the Helm chart deployments/helm/p2pd: it lints
// and renders the chart with helm (helm.sh/helm/v4 through `go tool`) for
// several sets of values, decodes every rendered object strictly into the
// Kubernetes API types (an unknown or duplicated field fails), and checks
// that the objects fit together and fit the binaries: every flag the chart
// passes exists in the service's --help, every probe reaches the port the
// service's ops listener is told to use, every Secret, Service selector and
// autoscaler target names something rendered.
//
// It lives in a module of its own so the Kubernetes modules never enter the
// main go.mod. Run it with `make helm-test` (or `go test ./...` in
// deployments/helm).
package charttest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "p2pd" // relative to deployments/helm, where helm runs
	namespace = "video"
)

// helm runs the helm CLI of this module (go tool helm) and returns its
// standard output; a failure carries its standard error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "helm"}, args...)...)
	cmd.Dir = ".."
	// No kube config, no repositories: rendering and linting touch no
	// cluster and no network.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home,
		"KUBECONFIG="+filepath.Join(home, "none"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// rendered is the chart rendered with one set of values, decoded.
type rendered struct {
	objects      []runtime.Object
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	claims       map[string]*corev1.PersistentVolumeClaim
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
}

// strict decodes YAML or JSON into the registered API types, failing on
// unknown and duplicated fields.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeAll decodes every document of a rendered manifest strictly.
func decodeAll(manifest string) (*rendered, error) {
	r := &rendered{
		statefulSets: map[string]*appsv1.StatefulSet{},
		deployments:  map[string]*appsv1.Deployment{},
		services:     map[string]*corev1.Service{},
		secrets:      map[string]*corev1.Secret{},
		claims:       map[string]*corev1.PersistentVolumeClaim{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
	}
	docs := utilyaml.NewDocumentDecoder(io.NopCloser(strings.NewReader(manifest)))
	buf := make([]byte, 1<<20)
	for {
		n, err := docs.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("splitting the manifest: %w", err)
		}
		doc := buf[:n]
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("YAML: %w\n%s", err, doc)
		}
		obj, gvk, err := strict.Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding strictly: %w\n%s", err, doc)
		}
		r.objects = append(r.objects, obj)
		var name string
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			name, r.statefulSets[o.Name] = o.Name, o
		case *appsv1.Deployment:
			name, r.deployments[o.Name] = o.Name, o
		case *corev1.Service:
			name, r.services[o.Name] = o.Name, o
		case *corev1.Secret:
			name, r.secrets[o.Name] = o.Name, o
		case *corev1.PersistentVolumeClaim:
			name, r.claims[o.Name] = o.Name, o
		case *policyv1.PodDisruptionBudget:
			name, r.pdbs[o.Name] = o.Name, o
		case *autoscalingv2.HorizontalPodAutoscaler:
			name, r.hpas[o.Name] = o.Name, o
		default:
			return nil, fmt.Errorf("unexpected kind %v", gvk)
		}
		if name == "" {
			return nil, fmt.Errorf("%v without a name", gvk)
		}
	}
	return r, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// workload is a pod template with the name of what owns it.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for _, s := range r.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, s.Spec.Selector.MatchLabels, s.Spec.Template})
	}
	for _, d := range r.deployments {
		ws = append(ws, workload{"Deployment", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template})
	}
	slices.SortFunc(ws, func(a, b workload) int { return strings.Compare(a.name, b.name) })
	return ws
}

// opsPort is the port each service's ops listener is told to use.
var opsPort = map[string]int32{"tracker": 9091, "origin": 9090, "cachenode": 9092, "edge": 9093}

// testPKI writes a CA and a node certificate naming the release's nodes,
// as an operator would make them.
func testPKI(t *testing.T, release string) (cert, key, ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "p2pd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	base := fmt.Sprintf("%s.svc.cluster.local", namespace)
	nodeTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: release + " p2pd node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames:    []string{release + "-tracker." + base, release + "-origin." + base, "*." + release + "-cachenode." + base},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	caCert, _ := x509.ParseCertificate(caDER)
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	return enc("CERTIFICATE", nodeDER), enc("EC PRIVATE KEY", keyDER), enc("CERTIFICATE", caDER)
}

// valuesFile writes values as YAML and returns the file's path.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChart(t *testing.T) {
	cert, key, ca := testPKI(t, "cdn")
	tests := []struct {
		name    string
		values  map[string]any
		prefix  string // object name prefix
		wantErr string // helm template must fail with this
		check   func(t *testing.T, r *rendered)
	}{{
		name:   "defaults",
		prefix: "cdn-p2pd",
		check: func(t *testing.T, r *rendered) {
			etcd := r.statefulSets["cdn-p2pd-etcd"]
			if etcd == nil || *etcd.Spec.Replicas != 3 || len(etcd.Spec.VolumeClaimTemplates) != 1 {
				t.Fatalf("etcd: want a StatefulSet of 3 members with a volume each, got %+v", etcd)
			}
			if etcd.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("etcd members must start in parallel (a quorum makes the first ready), got %q", etcd.Spec.PodManagementPolicy)
			}
			c := etcd.Spec.Template.Spec.Containers[0]
			if c.Image != "p2pd/etcd:dev" {
				t.Errorf("etcd image %q, want the compose stack's p2pd/etcd:dev", c.Image)
			}
			want := "cdn-p2pd-etcd-0=http://cdn-p2pd-etcd-0.cdn-p2pd-etcd.video.svc.cluster.local:2380," +
				"cdn-p2pd-etcd-1=http://cdn-p2pd-etcd-1.cdn-p2pd-etcd.video.svc.cluster.local:2380," +
				"cdn-p2pd-etcd-2=http://cdn-p2pd-etcd-2.cdn-p2pd-etcd.video.svc.cluster.local:2380"
			if got := env(c, "ETCD_INITIAL_CLUSTER"); got != want {
				t.Errorf("ETCD_INITIAL_CLUSTER:\n got %s\nwant %s", got, want)
			}
			if svc := r.services["cdn-p2pd-etcd"]; svc == nil || svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("etcd needs a headless Service publishing members before they are ready: %+v", svc)
			}

			cn := r.statefulSets["cdn-p2pd-cachenode"]
			if cn == nil || *cn.Spec.Replicas != 3 || len(cn.Spec.VolumeClaimTemplates) != 1 {
				t.Fatalf("cachenode: want a StatefulSet of 3 with a volume each, got %+v", cn)
			}
			aff := cn.Spec.Template.Spec.Affinity
			if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Errorf("cachenode: want a preferred anti-affinity, got %+v", aff)
			}
			if got := arg(cn.Spec.Template.Spec.Containers[0], "advertise"); got != "$(POD_NAME).cdn-p2pd-cachenode.video.svc.cluster.local:7200" {
				t.Errorf("cachenode advertises %q, want its stable name", got)
			}

			edge := r.deployments["cdn-p2pd-edge"]
			if edge == nil || edge.Spec.Replicas != nil {
				t.Fatalf("edge: want a Deployment whose replicas the autoscaler owns, got %+v", edge)
			}
			if ru := edge.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable.IntValue() != 0 {
				t.Errorf("edge updates must start a new edge before stopping one: %+v", edge.Spec.Strategy)
			}
			hpa := r.hpas["cdn-p2pd-edge"]
			if hpa == nil || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.MaxReplicas != 10 || *hpa.Spec.MinReplicas != 2 {
				t.Errorf("edge autoscaler: %+v", hpa)
			}
			if pdb := r.pdbs["cdn-p2pd-edge"]; pdb == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("edge disruption budget: %+v", pdb)
			}
			if svc := r.services["cdn-p2pd-edge"]; svc == nil || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].Port != 80 {
				t.Errorf("edge Service: %+v", svc)
			}
			if ps := edge.Spec.Template.Spec.Containers[0].Lifecycle; ps == nil || ps.PreStop == nil || ps.PreStop.Sleep == nil || ps.PreStop.Sleep.Seconds != 5 {
				t.Errorf("edge preStop: %+v", ps)
			}
			if _, ok := r.claims["cdn-p2pd-media"]; !ok {
				t.Error("no media claim for the origin")
			}
			for _, n := range []string{"cdn-p2pd-admin-token", "cdn-p2pd-join-token", "cdn-p2pd-origin-token"} {
				if s := r.secrets[n]; s == nil || len(s.Data["token"]) < 32 {
					t.Errorf("secret %s: want a generated token of 32 or more characters, got %+v", n, s)
				}
			}
			if _, ok := r.secrets["cdn-p2pd-tls"]; ok {
				t.Error("a TLS secret without tls.enabled")
			}
			for _, w := range r.workloads() {
				for _, c := range w.pod.Spec.Containers {
					if c.Name != "etcd" && env(c, "P2PD_JOIN_TOKEN") != "secret:cdn-p2pd-join-token/token" {
						t.Errorf("%s: P2PD_JOIN_TOKEN is %q, want the join token Secret", w.name, env(c, "P2PD_JOIN_TOKEN"))
					}
					// Only the trackers and the origin hold the origin credential.
					want := ""
					if c.Name == "tracker" || c.Name == "origin" {
						want = "secret:cdn-p2pd-origin-token/token"
					}
					if got := env(c, "P2PD_ORIGIN_TOKEN"); got != want {
						t.Errorf("%s: P2PD_ORIGIN_TOKEN is %q, want %q", w.name, got, want)
					}
				}
			}
		},
	}, {
		name: "everything changed",
		values: map[string]any{
			"fullnameOverride": "vod",
			"clusterDomain":    "k8s.example",
			"image":            map[string]any{"repositoryPrefix": "registry.example.com/p2pd/", "tag": "1.2.3", "pullPolicy": "Never", "pullSecrets": []string{"regcred"}},
			"adminToken":       map[string]any{"existingSecret": "ops-admin"},
			"joinToken":        map[string]any{"value": "join-me-please"},
			"tls":              map[string]any{"enabled": true, "cert": cert, "key": key, "ca": ca},
			"tracing":          map[string]any{"endpoint": "http://jaeger-collector.tracing:4317"},
			"etcd":             map[string]any{"replicas": 5, "antiAffinity": "hard", "persistence": map[string]any{"storageClass": "fast"}},
			"tracker":          map[string]any{"replicas": 3, "extraArgs": []string{"--lease-ttl=20s"}},
			"origin":           map[string]any{"media": map[string]any{"existingClaim": "films"}},
			"cachenode":        map[string]any{"replicas": 6, "antiAffinity": "hard", "maxBytes": "100G", "persistence": map[string]any{"size": "120Gi"}},
			"edge": map[string]any{"replicas": 4, "autoscaling": map[string]any{"enabled": false},
				"service": map[string]any{"type": "NodePort", "nodePort": 30080}, "preStopSleepSeconds": 0},
		},
		prefix: "vod",
		check: func(t *testing.T, r *rendered) {
			etcd := r.statefulSets["vod-etcd"]
			if *etcd.Spec.Replicas != 5 || strings.Count(env(etcd.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER"), "=http://") != 5 {
				t.Errorf("etcd with 5 members: replicas %d, ETCD_INITIAL_CLUSTER %s", *etcd.Spec.Replicas, env(etcd.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER"))
			}
			if sc := etcd.Spec.VolumeClaimTemplates[0].Spec.StorageClassName; sc == nil || *sc != "fast" {
				t.Errorf("etcd storage class %v", sc)
			}
			tr := r.deployments["vod-tracker"]
			if got := arg(tr.Spec.Template.Spec.Containers[0], "etcd-endpoints"); strings.Count(got, ",") != 4 || !strings.Contains(got, "vod-etcd-4.vod-etcd.video.svc.k8s.example:2379") {
				t.Errorf("tracker --etcd-endpoints %q", got)
			}
			cn := r.statefulSets["vod-cachenode"]
			if aff := cn.Spec.Template.Spec.Affinity.PodAntiAffinity; len(aff.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Errorf("hard anti-affinity: %+v", aff)
			}
			c := cn.Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example.com/p2pd/cachenode:1.2.3" || c.ImagePullPolicy != corev1.PullNever {
				t.Errorf("image %s, policy %s", c.Image, c.ImagePullPolicy)
			}
			if arg(c, "max-bytes") != "100G" || env(c, "P2PD_TLS_CA") != "/etc/p2pd/tls/ca.crt" || env(c, "OTEL_EXPORTER_OTLP_ENDPOINT") != "http://jaeger-collector.tracing:4317" {
				t.Errorf("cachenode: max-bytes %q, TLS CA %q, OTLP %q", arg(c, "max-bytes"), env(c, "P2PD_TLS_CA"), env(c, "OTEL_EXPORTER_OTLP_ENDPOINT"))
			}
			edge := r.deployments["vod-edge"]
			if edge.Spec.Replicas == nil || *edge.Spec.Replicas != 4 || len(r.hpas) != 0 {
				t.Errorf("edge without autoscaler: replicas %v, autoscalers %d", edge.Spec.Replicas, len(r.hpas))
			}
			if edge.Spec.Template.Spec.Containers[0].Lifecycle != nil {
				t.Error("preStopSleepSeconds 0 still renders a preStop hook")
			}
			if svc := r.services["vod-edge"]; svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 30080 {
				t.Errorf("edge Service %+v", svc.Spec)
			}
			if _, ok := r.secrets["vod-admin-token"]; ok {
				t.Error("admin token Secret rendered although existingSecret is set")
			}
			if s := r.secrets["vod-join-token"]; s == nil || string(s.Data["token"]) != "join-me-please" {
				t.Errorf("join token Secret %+v", s)
			}
			s := r.secrets["vod-tls"]
			if s == nil || s.Type != corev1.SecretTypeTLS || string(s.Data["ca.crt"]) != ca {
				t.Fatalf("TLS Secret %+v", s)
			}
			if _, err := tlsPair(s); err != nil {
				t.Errorf("TLS Secret: %v", err)
			}
			if len(r.claims) != 0 {
				t.Errorf("claims %v rendered although origin.media.existingClaim is set", r.claims)
			}
			if v := volume(r.deployments["vod-origin"].Spec.Template.Spec, "media"); v == nil || v.PersistentVolumeClaim.ClaimName != "films" {
				t.Errorf("origin media volume %+v", v)
			}
		},
	}, {
		name:    "anti-affinity neither soft nor hard",
		values:  map[string]any{"cachenode": map[string]any{"antiAffinity": "sometimes"}},
		wantErr: `antiAffinity of cachenode: "sometimes", want soft or hard`,
	}, {
		name:    "TLS without a certificate",
		values:  map[string]any{"tls": map[string]any{"enabled": true}},
		wantErr: "tls.enabled needs tls.existingSecret",
	}, {
		name:    "no etcd",
		values:  map[string]any{"etcd": map[string]any{"replicas": 0}},
		wantErr: "etcd.replicas must be at least 1",
	}}
	flags := serviceFlags(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{chartDir, "--namespace", namespace}
			if tt.values != nil {
				args = append(args, "-f", valuesFile(t, tt.values))
			}
			out, err := helm(t, append([]string{"template", "cdn"}, args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("helm template: want an error with %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := helm(t, append([]string{"lint", "--strict"}, args...)...); err != nil {
				t.Errorf("lint: %v", err)
			}
			r, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d objects", len(r.objects))
			consistent(t, r, tt.prefix, flags)
			tt.check(t, r)
		})
	}
}

// TestStrictDecodingCatchesUnknownFields proves the decoding above is
// strict: a misspelt field and an unknown kind both fail.
func TestStrictDecodingCatchesUnknownFields(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selectr: {app: a}}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: 1, replicas: 2}\n",
		"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n",
	} {
		if _, err := decodeAll(doc); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

// consistent checks what holds for every set of values: names, selectors,
// probes against the ops listener, flags against the binaries, and every
// reference to a Secret, claim or Deployment.
func consistent(t *testing.T, r *rendered, prefix string, flags map[string][]string) {
	t.Helper()
	for _, w := range r.workloads() {
		component := strings.TrimPrefix(w.name, prefix+"-")
		sel := labels.SelectorFromSet(w.selector)
		if !sel.Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s: selector %v does not match its pods' labels %v", w.name, w.selector, w.pod.Labels)
		}
		spec := w.pod.Spec
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pods may run as root", w.name)
		}
		for _, c := range spec.Containers {
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if component != "etcd" {
				checkFlags(t, w.name, c, flags[component])
				ops := ports["ops"]
				if ops != opsPort[component] || arg(c, "ops") != fmt.Sprintf(":%d", ops) {
					t.Errorf("%s: ops port %d, --ops %q, want %d", w.name, ops, arg(c, "ops"), opsPort[component])
				}
				for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					want := map[string]string{"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}[what]
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "ops" {
						t.Errorf("%s: %s probe %+v, want GET %s on the ops port", w.name, what, p, want)
					}
				}
			}
			for _, m := range c.VolumeMounts {
				if volume(spec, m.Name) == nil && !claimTemplate(r, w, m.Name) {
					t.Errorf("%s: mount %s has no volume", w.name, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					checkSecret(t, r, w.name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
		for _, v := range spec.Volumes {
			switch {
			case v.Secret != nil:
				keys := []string{"tls.crt", "tls.key", "ca.crt"}
				if v.Name != "tls" {
					keys = []string{"token"}
				}
				for _, k := range keys {
					checkSecret(t, r, w.name, v.Secret.SecretName, k)
				}
			case v.PersistentVolumeClaim != nil:
				if _, ok := r.claims[v.PersistentVolumeClaim.ClaimName]; !ok && !strings.HasPrefix(v.PersistentVolumeClaim.ClaimName, "films") {
					t.Errorf("%s: claim %s is not rendered", w.name, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
	}
	for _, s := range r.services {
		if len(s.Spec.Selector) == 0 || !selectsSome(r, s.Spec.Selector) {
			t.Errorf("Service %s selects no pods (%v)", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type == 1 && !namedPortExists(r, s.Spec.Selector, p.TargetPort.StrVal) {
				t.Errorf("Service %s: target port %q is no container port of its pods", s.Name, p.TargetPort.StrVal)
			}
		}
	}
	for _, p := range r.pdbs {
		if !selectsSome(r, p.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget %s selects no pods", p.Name)
		}
	}
	for _, h := range r.hpas {
		if _, ok := r.deployments[h.Spec.ScaleTargetRef.Name]; !ok {
			t.Errorf("autoscaler %s targets %s, not rendered", h.Name, h.Spec.ScaleTargetRef.Name)
		}
	}
	for _, s := range r.statefulSets {
		if svc := r.services[s.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != "None" {
			t.Errorf("StatefulSet %s: governing Service %s is not a rendered headless Service", s.Name, s.Spec.ServiceName)
		}
	}
}

// checkFlags requires every --flag in the container's arguments to be a
// flag of the binary, and every P2PD_ variable to name one (the join and
// origin token variables are the tokens themselves, read by the token
// loaders of the binaries that use them).
func checkFlags(t *testing.T, who string, c corev1.Container, known []string) {
	t.Helper()
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if strings.HasPrefix(a, "--") && !slices.Contains(known, name) {
			t.Errorf("%s: %s is not a flag of %s (flags: %v)", who, a, c.Name, known)
		}
	}
	for _, e := range c.Env {
		name, ok := strings.CutPrefix(e.Name, "P2PD_")
		if !ok || e.Name == "P2PD_JOIN_TOKEN" || e.Name == "P2PD_ORIGIN_TOKEN" {
			continue
		}
		if flag := strings.ReplaceAll(strings.ToLower(name), "_", "-"); !slices.Contains(known, flag) {
			t.Errorf("%s: %s sets --%s, which %s does not have", who, e.Name, flag, c.Name)
		}
	}
}

func checkSecret(t *testing.T, r *rendered, who, name, key string) {
	t.Helper()
	if name == "ops-admin" { // existingSecret in the values: made by the operator
		return
	}
	s, ok := r.secrets[name]
	if !ok {
		t.Errorf("%s: Secret %s is not rendered", who, name)
		return
	}
	if len(s.Data[key]) == 0 {
		t.Errorf("%s: Secret %s has no key %s", who, name, key)
	}
}

func claimTemplate(r *rendered, w workload, name string) bool {
	if s, ok := r.statefulSets[w.name]; ok {
		for _, c := range s.Spec.VolumeClaimTemplates {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

func selectsSome(r *rendered, sel map[string]string) bool {
	for _, w := range r.workloads() {
		if labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels)) {
			return true
		}
	}
	return false
}

func namedPortExists(r *rendered, sel map[string]string, port string) bool {
	for _, w := range r.workloads() {
		if !labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels)) {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == port {
					return true
				}
			}
		}
	}
	return false
}

// env returns a variable's value, or "secret:NAME/KEY" for one taken from
// a Secret.
func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
		return e.Value
	}
	return ""
}

// arg returns the value of --name=VALUE in the container's arguments.
func arg(c corev1.Container, name string) string {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// tlsPair checks that the Secret's certificate is signed by its CA and
// matches its key.
func tlsPair(s *corev1.Secret) (*x509.Certificate, error) {
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return nil, errors.New("tls.crt holds no PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		return nil, errors.New("ca.crt holds no certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	return cert, nil
}

// serviceFlags builds the four services from the main module and returns
// the flags each lists in its --help, so the chart cannot pass a flag a
// binary does not have.
func serviceFlags(t *testing.T) map[string][]string {
	t.Helper()
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var pkgs []string
	for svc := range opsPort {
		pkgs = append(pkgs, "./services/"+svc)
	}
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = "../../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the services: %v\n%s", err, out)
	}
	flags := map[string][]string{}
	re := regexp.MustCompile(`(?m)^\s+-{1,2}([a-z][a-z0-9-]+)`)
	for svc := range opsPort {
		out, _ := exec.CommandContext(ctx, filepath.Join(bin, svc), "--help").CombinedOutput()
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			flags[svc] = append(flags[svc], m[1])
		}
		if !slices.Contains(flags[svc], "ops") {
			t.Fatalf("%s --help lists no --ops flag:\n%s", svc, out)
		}
	}
	return flags
}
