package pix

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mutuo/lending"
)

func TestSandboxCreateCharge(t *testing.T) {
	ctx := context.Background()
	var psp PSP = Sandbox{}
	txid := "c3e0e7a4e7f1469a9f782d3d4999343c"
	res, err := psp.CreateCharge(ctx, Charge{Txid: txid, Amount: 150_00, Expiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Txid != txid {
		t.Errorf("txid %q", res.Txid)
	}
	b, err := Decode(res.BRCode)
	if err != nil {
		t.Fatalf("Decode(%q): %v", res.BRCode, err)
	}
	want := BRCode{URL: "pix.sandbox.mutuo.invalid/v2/cob/" + txid, MerchantName: "MUTUO SANDBOX", MerchantCity: "SAO PAULO", Amount: 150_00}
	if b != want {
		t.Errorf("BR Code = %+v, want %+v", b, want)
	}
	// Deterministic: the same charge gives the same code.
	again, _ := psp.CreateCharge(ctx, Charge{Txid: txid, Amount: 150_00, Expiry: time.Hour})
	if again != res {
		t.Errorf("not deterministic: %+v vs %+v", again, res)
	}
	// Configured names.
	custom := Sandbox{MerchantName: "OUTRO", MerchantCity: "RECIFE", Location: "psp.example/cob"}
	res2, err := custom.CreateCharge(ctx, Charge{Txid: NewTxid(), Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := Decode(res2.BRCode); b.MerchantName != "OUTRO" || b.MerchantCity != "RECIFE" || !strings.HasPrefix(b.URL, "psp.example/cob/") {
		t.Errorf("custom sandbox code %+v", b)
	}

	bad := []Charge{
		{Txid: "short", Amount: 100},
		{Txid: txid + "-", Amount: 100},
		{Txid: txid, Amount: 0},
		{Txid: txid, Amount: -1},
		{Txid: txid, Amount: 1_000_000_000_000},
		{Txid: txid, Amount: 100, Expiry: -time.Second},
		{Txid: txid, Amount: 100, Description: strings.Repeat("d", 141)},
	}
	for _, c := range bad {
		if _, err := psp.CreateCharge(ctx, c); !lending.IsCode(err, lending.CodeBadUserInput) {
			t.Errorf("CreateCharge(%+v) err = %v", c, err)
		}
	}
	// Misconfiguration is not the user's fault: not a lending.Error.
	_, err = Sandbox{MerchantName: strings.Repeat("N", 26)}.CreateCharge(ctx, Charge{Txid: txid, Amount: 100})
	if _, isUser := lending.AsError(err); err == nil || isUser {
		t.Errorf("misconfigured sandbox err = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := psp.CreateCharge(cancelled, Charge{Txid: txid, Amount: 100}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx err = %v", err)
	}
}

func TestSandboxPay(t *testing.T) {
	ctx := context.Background()
	var psp PSP = Sandbox{}
	tests := []struct {
		name     string
		p        Payout
		status   lending.WithdrawalStatus
		wantCode lending.Code
	}{
		{"ok", Payout{IdempotencyKey: "w-1", Key: "+5511987654321", Amount: 100_00}, lending.WithdrawalCompleted, ""},
		{"ok cpf", Payout{IdempotencyKey: "w-2", Key: "529.982.247-25", Amount: 12}, lending.WithdrawalCompleted, ""},
		{"ok .14", Payout{IdempotencyKey: "w-3", Key: "a@b.co", Amount: 50_14}, lending.WithdrawalCompleted, ""},
		{"magic .13", Payout{IdempotencyKey: "w-4", Key: "a@b.co", Amount: 50_13}, lending.WithdrawalFailed, ""},
		{"magic 0.13", Payout{IdempotencyKey: "w-5", Key: "a@b.co", Amount: 13}, lending.WithdrawalFailed, ""},
		{"failing key", Payout{IdempotencyKey: "w-6", Key: SandboxFailingKey, Amount: 100_00}, lending.WithdrawalFailed, ""},
		{"failing key, any case", Payout{IdempotencyKey: "w-7", Key: strings.ToUpper(SandboxFailingKey), Amount: 100_00}, lending.WithdrawalFailed, ""},
		{"bad key", Payout{IdempotencyKey: "w-8", Key: "not a key", Amount: 100}, "", lending.CodeBadUserInput},
		{"zero", Payout{IdempotencyKey: "w-9", Key: "a@b.co", Amount: 0}, "", lending.CodeBadUserInput},
		{"negative", Payout{IdempotencyKey: "w-10", Key: "a@b.co", Amount: -13}, "", lending.CodeBadUserInput},
		{"no idempotency key", Payout{Key: "a@b.co", Amount: 100}, "", lending.CodeBadUserInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := psp.Pay(ctx, tt.p)
			if tt.wantCode != "" {
				if !lending.IsCode(err, tt.wantCode) {
					t.Fatalf("err = %v, want %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || len(res.EndToEndID) != 32 || !alnum(res.EndToEndID) ||
				!strings.HasPrefix(res.EndToEndID, "E"+SandboxISPB) || (res.Status == lending.WithdrawalFailed) != (res.Reason != "") {
				t.Fatalf("= %+v, want status %s", res, tt.status)
			}
			// Idempotent: the same payout gives the same result.
			if again, err := psp.Pay(ctx, tt.p); err != nil || again != res {
				t.Fatalf("retry = %+v, %v; want %+v", again, err, res)
			}
		})
	}
	a, _ := psp.Pay(ctx, Payout{IdempotencyKey: "k1", Key: "a@b.co", Amount: 100})
	b, _ := psp.Pay(ctx, Payout{IdempotencyKey: "k2", Key: "a@b.co", Amount: 100})
	if a.EndToEndID == b.EndToEndID {
		t.Error("different payouts share an EndToEndID")
	}
}

// The sandbox's simulated payment is a webhook ParseWebhook accepts, and
// signing it round-trips.
func TestSandboxPaymentWebhook(t *testing.T) {
	s := Sandbox{}
	txid := NewTxid()
	at := time.Date(2025, 5, 1, 10, 0, 0, 123_000_000, time.FixedZone("BRT", -3*3600))
	body := s.PaymentWebhook(txid, 250_00, at)
	ps, err := ParseWebhook(body)
	if err != nil || len(ps) != 1 {
		t.Fatalf("ParseWebhook(%s) = %v, %v", body, ps, err)
	}
	p := ps[0]
	if p.Txid != txid || p.Amount != 250_00 || !p.PaidAt.Equal(at) || !strings.HasPrefix(p.EndToEndID, "E"+SandboxISPB) {
		t.Errorf("payment %+v", p)
	}
	if string(s.PaymentWebhook(txid, 250_00, at)) != string(body) {
		t.Error("not deterministic")
	}
	secret := []byte("k")
	if !VerifySignature(secret, body, Sign(secret, body)) {
		t.Error("signature")
	}
}
