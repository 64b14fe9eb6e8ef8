package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mutuo/app"
	"mutuo/lending"
	"mutuo/pix"
)

// sandbox runs the development helpers:
//
//	mutuo sandbox pay [-url http://localhost:8080] TXID
//
// pays a pending deposit the way the PSP would: it builds the central bank's
// webhook body for the charge's amount, signs it with PIX_WEBHOOK_SECRET and
// posts it to the running server's /webhooks/pix.
func sandbox(ctx context.Context, cfg app.Config, args []string) error {
	if len(args) == 0 || args[0] != "pay" {
		return errors.New("usage: mutuo sandbox pay [-url URL] TXID")
	}
	fs := flag.NewFlagSet("sandbox pay", flag.ContinueOnError)
	base := fs.String("url", "", "the server's base URL (default http://localhost"+cfg.HTTPAddr+" for HTTP_ADDR)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: mutuo sandbox pay [-url URL] TXID")
	}
	txid := strings.TrimSpace(fs.Arg(0))
	if !pix.ValidTxid(txid) {
		return fmt.Errorf("%q is not a txid (26-35 letters and digits)", txid)
	}
	if *base == "" {
		host := cfg.HTTPAddr
		if strings.HasPrefix(host, ":") {
			host = "localhost" + host
		}
		*base = "http://" + host
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer pool.Close()
	var amount lending.Money
	var status string
	err = pool.QueryRow(ctx, `SELECT amount, status FROM deposits WHERE txid = $1`, txid).Scan(&amount, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("no deposit has txid %s", txid)
	}
	if err != nil {
		return fmt.Errorf("look up deposit: %w", err)
	}
	if status != string(lending.DepositPending) {
		return fmt.Errorf("deposit %s is %s, not PENDING", txid, status)
	}
	body := pix.Sandbox{}.PaymentWebhook(txid, amount, time.Now())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*base, "/")+"/webhooks/pix", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mutuo-Signature", pix.Sign(cfg.PixWebhookSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook (is the server running at %s?): %w", *base, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Printf("paid R$ %s to %s: %s %s\n", amount, txid, resp.Status, strings.TrimSpace(string(out)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
