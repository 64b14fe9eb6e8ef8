package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"mutuo/lending"
)

// DepositForTest credits a user's wallet with amount from Pix clearing
// through the ledger, as a confirmed Pix deposit does (one DEPOSIT transfer
// written by post). It exists for the external store tests only, which
// cannot reach post themselves: they import internal/testenv, which imports
// store, so they must live in package store_test.
func (s *Store) DepositForTest(ctx context.Context, userID int64, amount lending.Money) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		pix, err := platformWallet(ctx, tx, "PIX_CLEARING")
		if err != nil {
			return err
		}
		w, err := userWallet(ctx, tx, userID)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("Test deposit of R$ %v", amount)
		_, err = post(ctx, tx, Transfer{Kind: "DEPOSIT", Legs: []Leg{
			{WalletID: pix, Amount: -amount, Kind: lending.EntryDeposit, Description: desc},
			{WalletID: w, Amount: amount, Kind: lending.EntryDeposit, Description: desc},
		}})
		return err
	})
}
