package e2e

import (
	"context"
	"testing"

	"mutuo/lending"
)

// world is a small, fully known dataset: users signed up through the API
// (apiWorld), and, for seedWorld, loans, money, chats and notifications
// written with SQL so the read tests know every figure.
type world struct {
	tokens map[string]string // inv1, inv2, bor1, bor2, admin
	users  map[string]int64
	ids    map[string]int64 // investors, borrowers, loans, wallets, chats, …
}

func signUp(e *env, name, email string, roles []string, income string) (string, int64) {
	e.t.Helper()
	in := map[string]any{"name": name, "email": email, "password": "password-123", "roles": roles}
	if income != "" {
		in["monthlyIncome"] = income
	}
	d := e.ok("", `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken user { id } } }`, map[string]any{"in": in})
	_, id, err := lending.ParseGlobalID(str(d, "signUp.user.id"))
	if err != nil {
		e.t.Fatal(err)
	}
	return str(d, "signUp.accessToken"), id
}

func signIn(e *env, email, password string) string {
	e.t.Helper()
	d := e.ok("", `mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }`,
		map[string]any{"e": email, "p": password})
	return str(d, "signIn.accessToken")
}

func seedWorld(t *testing.T, e *env) *world {
	t.Helper()
	w := apiWorld(t, e)
	w.tokens["admin"] = signIn(e, "admin@test.dev", "admin-password-1")

	ctx := context.Background()
	tx, err := e.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	q := func(dst string, sql string, args ...any) {
		t.Helper()
		var id int64
		if err := tx.QueryRow(ctx, sql, args...).Scan(&id); err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		if dst != "" {
			w.ids[dst] = id
		}
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for _, k := range []string{"inv1", "inv2"} {
		q("investor:"+k, `SELECT id FROM investors WHERE user_id = $1`, w.users[k])
	}
	for _, k := range []string{"bor1", "bor2"} {
		q("borrower:"+k, `SELECT id FROM borrowers WHERE user_id = $1`, w.users[k])
	}
	for _, k := range []string{"inv1", "inv2", "bor1", "bor2"} {
		q("wallet:"+k, `SELECT id FROM wallets WHERE user_id = $1`, w.users[k])
	}
	q("clearing", `SELECT id FROM wallets WHERE kind = 'PIX_CLEARING'`)

	// money in: a balanced deposit transfer per investor, and a deposit row
	deposit := func(k string, amount int64) {
		q("transfer:"+k, `INSERT INTO transfers (kind) VALUES ('deposit') RETURNING id`)
		exec(`UPDATE wallets SET balance = balance + $2, version = version + 1 WHERE id = $1`, w.ids["wallet:"+k], amount)
		exec(`UPDATE wallets SET balance = balance - $2 WHERE id = $1`, w.ids["clearing"], amount)
		q("entry:"+k, `INSERT INTO ledger_entries (transfer_id, wallet_id, kind, amount, balance_after, description)
			VALUES ($1, $2, 'DEPOSIT', $3, $3, 'Pix deposit') RETURNING id`, w.ids["transfer:"+k], w.ids["wallet:"+k], amount)
		exec(`INSERT INTO ledger_entries (transfer_id, wallet_id, kind, amount, balance_after, description)
			VALUES ($1, $2, 'DEPOSIT', $3, (SELECT balance FROM wallets WHERE id = $2), 'Pix deposit')`, w.ids["transfer:"+k], w.ids["clearing"], -amount)
		q("deposit:"+k, `INSERT INTO deposits (user_id, wallet_id, amount, status, txid, br_code, expires_at)
			VALUES ($1, $2, $3, 'COMPLETED', $4, 'brcode', now() + interval '1 hour') RETURNING id`,
			w.users[k], w.ids["wallet:"+k], amount, "TXID"+k+"000000000000000000000000")
	}
	deposit("inv1", 1_000_000)
	deposit("inv2", 500_000)
	q("withdrawal:inv2", `INSERT INTO withdrawals (user_id, wallet_id, amount, pix_key, pix_key_type, status)
		VALUES ($1, $2, 1000, 'bruno@test.dev', 'EMAIL', 'PENDING') RETURNING id`, w.users["inv2"], w.ids["wallet:inv2"])

	loan := func(key, bor string, amount int64, term, rate int, grade, status, age string) {
		q("loan:"+key, `INSERT INTO loans (borrower_id, amount, term_months, annual_rate_bps, grade, purpose, status, funding_deadline, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, now() + interval '14 days' - $8::interval, now() - $8::interval) RETURNING id`,
			w.ids["borrower:"+bor], amount, term, rate, grade, "Purpose of "+key, status, age)
	}
	loan("L1", "bor1", 100_000, 12, 2100, "B", "FUNDING", "1 hour")
	loan("L2", "bor1", 200_000, 24, 2900, "C", "FUNDING", "2 hours")
	loan("L3", "bor1", 100_000, 3, 1500, "A", "ACTIVE", "30 days")
	loan("L4", "bor1", 300_000, 6, 2100, "B", "CANCELLED", "40 days")
	loan("L5", "bor2", 500_000, 36, 3900, "D", "FUNDING", "3 hours")
	invest := func(key, loanKey, inv string, amount int64, status string) {
		q("investment:"+key, `INSERT INTO investments (loan_id, investor_id, amount, status) VALUES ($1, $2, $3, $4) RETURNING id`,
			w.ids["loan:"+loanKey], w.ids["investor:"+inv], amount, status)
		exec(`UPDATE loans SET funded_amount = funded_amount + $2 WHERE id = $1`, w.ids["loan:"+loanKey], amount)
	}
	invest("a", "L1", "inv1", 10_000, "COMMITTED")
	invest("b", "L1", "inv2", 5_000, "COMMITTED")
	invest("c", "L1", "inv1", 2_500, "COMMITTED")
	invest("d", "L3", "inv1", 50_000, "ACTIVE")
	invest("e", "L3", "inv2", 50_000, "ACTIVE")
	exec(`INSERT INTO installments (loan_id, number, due_date, principal, interest, status, paid) VALUES
		($1, 1, current_date + 1, 33000, 1250, 'PENDING', 0), ($1, 2, current_date + 31, 33400, 840, 'PENDING', 0),
		($1, 3, current_date + 61, 33600, 420, 'PENDING', 0)`, w.ids["loan:L3"])

	q("chat", `INSERT INTO chats (loan_id, user_low, user_high) VALUES ($1, least($2::bigint, $3::bigint), greatest($2::bigint, $3::bigint)) RETURNING id`,
		w.ids["loan:L1"], w.users["inv1"], w.users["bor1"])
	exec(`INSERT INTO chat_members (chat_id, user_id) VALUES ($1, $2), ($1, $3)`, w.ids["chat"], w.users["inv1"], w.users["bor1"])
	q("msg1", `INSERT INTO messages (chat_id, sender_id, body) VALUES ($1, $2, 'Olá! Qual o prazo?') RETURNING id`, w.ids["chat"], w.users["inv1"])
	q("msg2", `INSERT INTO messages (chat_id, sender_id, body) VALUES ($1, $2, '12 meses.') RETURNING id`, w.ids["chat"], w.users["bor1"])
	q("msg3", `INSERT INTO messages (chat_id, sender_id, body, client_message_id) VALUES ($1, $2, 'E a taxa?', 'c-3') RETURNING id`, w.ids["chat"], w.users["bor1"])
	exec(`UPDATE chat_members SET last_read_message_id = $2 WHERE chat_id = $1 AND user_id = $3`, w.ids["chat"], w.ids["msg1"], w.users["inv1"])

	q("notif:inv1:a", `INSERT INTO notifications (user_id, kind, title, body, loan_id, read_at) VALUES ($1, 'DEPOSIT_CONFIRMED', 'Depósito', 'ok', NULL, now()) RETURNING id`, w.users["inv1"])
	q("notif:inv1:b", `INSERT INTO notifications (user_id, kind, title, body, loan_id) VALUES ($1, 'INVESTMENT_CONFIRMED', 'Investimento', 'ok', $2) RETURNING id`, w.users["inv1"], w.ids["loan:L1"])
	q("notif:bor1", `INSERT INTO notifications (user_id, kind, title, body) VALUES ($1, 'NEW_MESSAGE', 'Mensagem', 'ok') RETURNING id`, w.users["bor1"])
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func gid(k lending.Kind, id int64) string { return lending.GlobalID(k, id) }
