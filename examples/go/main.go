// Command deploy-and-watch deploys an image with k8s-deployer, then follows the pod's status
// until it is READY.
//
// It prints one line per message of the WatchStatus stream. It exits 0 once the pod is READY,
// 1 with the reason when it fails or the stream ends otherwise, 2 on a bad invocation. The
// bearer token comes from $DEPLOYER_TOKEN, so that it stays out of the process list.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// Generated from proto/deployer/v1/deployer.proto by run.sh.
	pb "k8s-deployer/examples/go/gen/deployer/v1"
)

// short turns HEALTH_READY into READY, and an UNSPECIFIED value into "-".
func short(e fmt.Stringer, prefix string) string {
	if s := strings.TrimPrefix(e.String(), prefix); s != "UNSPECIFIED" {
		return s
	}
	return "-"
}

// show prints one line per pod; it returns the reason of a pod that FAILED.
func show(seq uint64, kind string, pods ...*pb.PodStatus) error {
	for _, p := range pods {
		reason := short(p.GetReason(), "REASON_")
		line := fmt.Sprintf("#%-3d %-8s %-9s %-11s %-18s %s", seq, kind, cmp.Or(p.GetPhase(), "-"),
			short(p.GetHealth(), "HEALTH_"), reason, p.GetMessage())
		fmt.Println(strings.TrimRight(line, " "))
		if p.GetHealth() == pb.Health_HEALTH_FAILED {
			return fmt.Errorf("%s: %s", reason, p.GetMessage())
		}
	}
	return nil
}

// watch follows the pod until it is READY (nil) or fails (the reason).
func watch(ctx context.Context, client pb.DeployerServiceClient, namespace, name string) error {
	stream, err := client.WatchStatus(ctx, &pb.WatchStatusRequest{
		Namespace: namespace, Name: name, Until: pb.Until_UNTIL_READY,
	})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the stream ended without an end message")
		} else if err != nil {
			return err
		}
		seq := msg.GetSequence()
		switch kind := msg.GetKind().(type) {
		case *pb.WatchStatusResponse_Snapshot:
			if kind.Snapshot.GetNotFound() {
				fmt.Printf("#%-3d snapshot (not found yet)\n", seq)
			}
			err = show(seq, "snapshot", kind.Snapshot.GetPods()...)
		case *pb.WatchStatusResponse_Resync:
			err = show(seq, "resync", kind.Resync.GetPods()...)
		case *pb.WatchStatusResponse_Pod:
			err = show(seq, "pod", kind.Pod)
		case *pb.WatchStatusResponse_Deleted:
			err = show(seq, "deleted", kind.Deleted)
		case *pb.WatchStatusResponse_Event:
			e := kind.Event
			fmt.Printf("#%-3d event    %s %s: %s\n", seq, e.GetType(), e.GetReason(), e.GetMessage())
		case *pb.WatchStatusResponse_Heartbeat:
			fmt.Printf("#%-3d heartbeat\n", seq)
		case *pb.WatchStatusResponse_End:
			why := short(kind.End.GetReason(), "END_REASON_") + ": " + kind.End.GetMessage()
			fmt.Printf("#%-3d end      %s\n", seq, why)
			if kind.End.GetReason() == pb.EndReason_END_REASON_UNTIL_MET {
				return nil // UNTIL_READY is met: the pod is READY
			}
			return errors.New("the stream ended: " + why)
		}
		if err != nil {
			return err
		}
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:50051", "server address (host:port)")
	namespace := flag.String("namespace", "", "namespace (required)")
	image := flag.String("image", "", "image (required)")
	name := flag.String("name", "", "pod name (derived from the image when empty)")
	useTLS := flag.Bool("tls", false, "use TLS, trusting the system's CAs")
	caFile := flag.String("ca-file", "", "use TLS, trusting this CA (PEM) instead")
	timeout := flag.Int("timeout", 300, "seconds to wait for READY")
	flag.Parse()
	token := os.Getenv("DEPLOYER_TOKEN")
	if *namespace == "" || *image == "" || token == "" {
		fmt.Fprintln(os.Stderr, "usage: DEPLOYER_TOKEN=... deploy-and-watch --namespace NS --image IMAGE [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}

	creds := insecure.NewCredentials()
	if *caFile != "" {
		var err error
		if creds, err = credentials.NewClientTLSFromFile(*caFile, ""); err != nil {
			return err
		}
	} else if *useTLS {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewDeployerServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeout)*time.Second)
	defer cancel()
	// Every call made with ctx sends the token.
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	deployed, err := client.Deploy(ctx, &pb.DeployRequest{Image: *image, Namespace: *namespace, Name: *name})
	if err != nil {
		return err
	}
	pod := deployed.GetPod()
	fmt.Printf("deployed %s/%s (%s)\n", pod.GetNamespace(), pod.GetName(), pod.GetImage())
	if err := watch(ctx, client, *namespace, pod.GetName()); err != nil {
		return err
	}
	fmt.Printf("READY: %s/%s\n", *namespace, pod.GetName())
	return nil
}

func main() {
	if err := run(); err != nil {
		if s, ok := status.FromError(err); ok {
			err = fmt.Errorf("%s: %s", s.Code(), s.Message())
		}
		fmt.Fprintln(os.Stderr, "FAILED:", err)
		os.Exit(1)
	}
}
