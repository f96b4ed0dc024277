// Command bprgoserver is the grpc-go peer of the Score benchmark: it serves
// curec.v1.RecommendService/Score from the same BPR artifact the daemon trained (user and
// item factors, item biases) and the same dataset id mapping, doing the same work per call:
// map ids to indices, one dot product plus bias per candidate.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"

	"curecserve/curecv1"

	"google.golang.org/grpc"

	_ "protocodec" // protobuf-go v2 codec for Debian's grpc-go 1.33
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type model struct {
	factors     int
	userFactors []float32
	itemFactors []float32
	itemBias    []float32
	userIndex   map[string]int
	itemIndex   map[string]int
}

type server struct {
	curecv1.UnimplementedRecommendServiceServer
	model *model
}

func (s *server) Score(_ context.Context, request *curecv1.ScoreRequest) (*curecv1.ScoreResponse, error) {
	m := s.model
	user, ok := m.userIndex[request.GetUserId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "user_id '%s' is not a user", request.GetUserId())
	}
	scores := make([]float32, len(request.GetItemIds()))
	k := m.factors
	p := m.userFactors[user*k : (user+1)*k]
	for slot, id := range request.GetItemIds() {
		item, ok := m.itemIndex[id]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "item_ids[%d] '%s' is not an item", slot, id)
		}
		q := m.itemFactors[item*k : (item+1)*k]
		sum := m.itemBias[item]
		for f := 0; f < k; f++ {
			sum += p[f] * q[f]
		}
		scores[slot] = sum
	}
	return &curecv1.ScoreResponse{Scores: scores, ServedBy: "bpr-go"}, nil
}

func readFloats(path string) []float32 {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatalf("read %s: %v", path, err)
	}
	values := make([]float32, len(data)/4)
	for i := range values {
		values[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[i*4:]))
	}
	return values
}

// readIDs returns the first column of a RecBole atomic file, in file order.
func readIDs(path string) map[string]int {
	file, err := os.Open(path)
	if err != nil {
		log.Fatalf("open %s: %v", path, err)
	}
	defer file.Close()
	index := map[string]int{}
	scanner := bufio.NewScanner(file)
	scanner.Scan() // header
	for scanner.Scan() {
		id := strings.SplitN(scanner.Text(), "\t", 2)[0]
		if _, seen := index[id]; !seen && id != "" {
			index[id] = len(index)
		}
	}
	return index
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	artifact := flag.String("artifact", "", "BPR artifact directory (models/bpr/vN)")
	dataset := flag.String("dataset", "var/data/ml-100k", "dataset directory")
	flag.Parse()

	var meta struct{ Users, Items, Factors int }
	raw, err := os.ReadFile(filepath.Join(*artifact, "bpr.json"))
	if err != nil {
		log.Fatalf("artifact: %v", err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		log.Fatalf("artifact: %v", err)
	}
	m := &model{
		factors:     meta.Factors,
		userFactors: readFloats(filepath.Join(*artifact, "user_factors.f32")),
		itemFactors: readFloats(filepath.Join(*artifact, "item_factors.f32")),
		itemBias:    readFloats(filepath.Join(*artifact, "item_bias.f32")),
		userIndex:   readIDs(filepath.Join(*dataset, "ml-100k.user")),
		itemIndex:   readIDs(filepath.Join(*dataset, "ml-100k.item")),
	}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	if *portFile != "" {
		port := listener.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("port file: %v", err)
		}
	}
	grpcServer := grpc.NewServer()
	curecv1.RegisterRecommendServiceServer(grpcServer, &server{model: m})
	if err := grpcServer.Serve(listener); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
