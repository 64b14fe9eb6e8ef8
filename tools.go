//go:build tools

// Package main's tools.go pins the code generator's version in go.mod.
package main

import (
	_ "github.com/99designs/gqlgen"
	_ "github.com/go-redis/redis_rate/v10"
	_ "github.com/gorilla/websocket"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/sdk/trace"
)
