package lending

import (
	"math"
	"math/rand"
	"testing"
)

func TestWalletRules(t *testing.T) {
	type op func(*Wallet, Money) error
	hold, release, post := (*Wallet).Hold, (*Wallet).ReleaseHold, (*Wallet).PostHold
	credit, debit := (*Wallet).Credit, (*Wallet).Debit
	tests := []struct {
		name                  string
		op                    op
		balance, held, amount Money
		wantCode              Code // "" for success
		wantBalance, wantHeld Money
	}{
		{"hold ok", hold, 1000, 200, 300, "", 1000, 500},
		{"hold all available", hold, 1000, 200, 800, "", 1000, 1000},
		{"hold too much", hold, 1000, 200, 801, CodeInsufficientFunds, 1000, 200},
		{"hold zero", hold, 1000, 0, 0, CodeBadUserInput, 1000, 0},
		{"hold negative", hold, 1000, 0, -5, CodeBadUserInput, 1000, 0},
		{"release ok", release, 1000, 500, 300, "", 1000, 200},
		{"release all", release, 1000, 500, 500, "", 1000, 0},
		{"release more than held", release, 1000, 500, 501, CodeInvalidState, 1000, 500},
		{"release zero", release, 1000, 500, 0, CodeBadUserInput, 1000, 500},
		{"post ok", post, 1000, 500, 300, "", 700, 200},
		{"post all", post, 500, 500, 500, "", 0, 0},
		{"post more than held", post, 1000, 500, 501, CodeInvalidState, 1000, 500},
		{"post negative", post, 1000, 500, -1, CodeBadUserInput, 1000, 500},
		{"credit ok", credit, 1000, 500, 250, "", 1250, 500},
		{"credit empty wallet", credit, 0, 0, 1, "", 1, 0},
		{"credit overflow", credit, math.MaxInt64 - 10, 0, 11, CodeInvalidState, math.MaxInt64 - 10, 0},
		{"credit zero", credit, 1000, 0, 0, CodeBadUserInput, 1000, 0},
		{"debit ok", debit, 1000, 200, 800, "", 200, 200},
		{"debit into held", debit, 1000, 200, 801, CodeInsufficientFunds, 1000, 200},
		{"debit empty", debit, 0, 0, 1, CodeInsufficientFunds, 0, 0},
		{"debit negative", debit, 1000, 0, -1, CodeBadUserInput, 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Wallet{ID: 1, Balance: tt.balance, Held: tt.held, Version: 7}
			err := tt.op(w, tt.amount)
			wantVersion := 8
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else {
				wantVersion = 7
				if !IsCode(err, tt.wantCode) {
					t.Fatalf("err = %v, want %s", err, tt.wantCode)
				}
			}
			if w.Balance != tt.wantBalance || w.Held != tt.wantHeld || w.Version != wantVersion {
				t.Errorf("wallet = balance %v held %v version %d, want %v %v %d",
					w.Balance, w.Held, w.Version, tt.wantBalance, tt.wantHeld, wantVersion)
			}
		})
	}
}

// Property: any sequence of operations keeps 0 <= Held <= Balance, conserves
// money (balance = credits - debits - posted holds) and bumps Version once per
// successful operation.
func TestWalletInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for run := 0; run < 200; run++ {
		w := &Wallet{}
		var in, out Money
		var ok int
		for step := 0; step < 200; step++ {
			amount := Money(rng.Int63n(5000) - 100)
			var err error
			switch rng.Intn(5) {
			case 0:
				if err = w.Credit(amount); err == nil {
					in += amount
				}
			case 1:
				if err = w.Debit(amount); err == nil {
					out += amount
				}
			case 2:
				err = w.Hold(amount)
			case 3:
				err = w.ReleaseHold(amount)
			case 4:
				if err = w.PostHold(amount); err == nil {
					out += amount
				}
			}
			if err == nil {
				ok++
			} else if _, isDomain := AsError(err); !isDomain {
				t.Fatalf("non-domain error %v", err)
			}
			if w.Held < 0 || w.Held > w.Balance || w.Balance != in-out || w.Version != ok {
				t.Fatalf("run %d step %d: invariant broken: %+v (in %v out %v ok %d)", run, step, w, in, out, ok)
			}
		}
	}
}
