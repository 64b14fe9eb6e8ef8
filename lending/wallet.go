package lending

import "math"

// The wallet rules below are pure: the store locks the row, applies one of
// them, and writes Balance, Held and Version back (WHERE version = old). Each
// rule either succeeds, changing the wallet and bumping Version by exactly
// 1, or returns an error and leaves the wallet untouched. Every amount must be
// positive (BAD_USER_INPUT otherwise). On success 0 <= Held <= Balance still
// holds if it held before.

// Hold reserves amount of the available balance (e.g. an investment waiting
// for its loan to fund): Held += amount. INSUFFICIENT_FUNDS if amount exceeds
// Available().
func (w *Wallet) Hold(amount Money) error {
	if err := checkPositiveAmount(amount); err != nil {
		return err
	}
	if amount > w.Available() {
		return insufficientFunds(w, amount)
	}
	w.Held += amount
	w.Version++
	return nil
}

// ReleaseHold gives back amount of a hold without moving money (e.g. a
// cancelled loan): Held -= amount. INVALID_STATE if amount exceeds Held.
func (w *Wallet) ReleaseHold(amount Money) error {
	if err := checkPositiveAmount(amount); err != nil {
		return err
	}
	if amount > w.Held {
		return Errorf(CodeInvalidState, "cannot release %v: only %v is held", amount, w.Held)
	}
	w.Held -= amount
	w.Version++
	return nil
}

// PostHold turns amount of a hold into a debit (e.g. a funded investment is
// disbursed): Balance -= amount and Held -= amount, so Available() does not
// change. INVALID_STATE if amount exceeds Held.
func (w *Wallet) PostHold(amount Money) error {
	if err := checkPositiveAmount(amount); err != nil {
		return err
	}
	if amount > w.Held {
		return Errorf(CodeInvalidState, "cannot post %v: only %v is held", amount, w.Held)
	}
	w.Balance -= amount
	w.Held -= amount
	w.Version++
	return nil
}

// Credit adds amount to the balance (a deposit, a repayment share). It
// returns INVALID_STATE rather than overflow int64.
func (w *Wallet) Credit(amount Money) error {
	if err := checkPositiveAmount(amount); err != nil {
		return err
	}
	if amount > math.MaxInt64-w.Balance {
		return Errorf(CodeInvalidState, "credit of %v would overflow the balance", amount)
	}
	w.Balance += amount
	w.Version++
	return nil
}

// Debit takes amount from the balance (a withdrawal, a repayment). It never
// touches held money: INSUFFICIENT_FUNDS if amount exceeds Available().
func (w *Wallet) Debit(amount Money) error {
	if err := checkPositiveAmount(amount); err != nil {
		return err
	}
	if amount > w.Available() {
		return insufficientFunds(w, amount)
	}
	w.Balance -= amount
	w.Version++
	return nil
}

func checkPositiveAmount(amount Money) error {
	if amount <= 0 {
		return BadInput("amount must be positive, got %v", amount)
	}
	return nil
}

func insufficientFunds(w *Wallet, amount Money) error {
	return Errorf(CodeInsufficientFunds, "insufficient funds: %v available, %v needed", w.Available(), amount)
}
