package e2e

import (
	"fmt"
	"testing"

	"mutuo/lending"
)

func TestMeAndNestedFields(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	d := e.ok(w.tokens["inv1"], `{ me { id name email roles createdAt
		wallet { id currency balance available held version owner { name }
			entries(first: 5) { edges { cursor node { id kind amount balanceAfter description loan { id } createdAt } } pageInfo { hasNextPage } } }
		investor { id displayName user { name }
			investments(first: 10) { totalCount edges { node { id amount status receivedPrincipal receivedInterest createdAt loan { id status } investor { displayName } } } }
			portfolio { invested outstandingPrincipal receivedPrincipal receivedInterest activeInvestments netAnnualizedReturn } }
		borrower { id } } }`, nil)
	if str(d, "me.name") != "Ana Investidora" || str(d, "me.email") != "ana@test.dev" {
		t.Fatalf("me: %v", d)
	}
	if got := str(d, "me.wallet.balance"); got != "10000.00" {
		t.Fatalf("balance = %q, want 10000.00", got)
	}
	if str(d, "me.wallet.available") != "10000.00" || str(d, "me.wallet.held") != "0.00" || num(d, "me.wallet.version") != 1 {
		t.Fatalf("wallet: %v", get(d, "me.wallet"))
	}
	if str(d, "me.wallet.entries.edges.0.node.kind") != "DEPOSIT" || str(d, "me.wallet.entries.edges.0.node.amount") != "10000.00" {
		t.Fatalf("entries: %v", get(d, "me.wallet.entries"))
	}
	if n := num(d, "me.investor.investments.totalCount"); n != 3 {
		t.Fatalf("investments totalCount = %d, want 3", n)
	}
	// newest first
	if got := str(d, "me.investor.investments.edges.0.node.id"); got != gid(lending.KindInvestment, w.ids["investment:d"]) {
		t.Fatalf("first investment %s", got)
	}
	if str(d, "me.investor.portfolio.invested") != "625.00" || str(d, "me.investor.portfolio.outstandingPrincipal") != "500.00" ||
		num(d, "me.investor.portfolio.activeInvestments") != 1 {
		t.Fatalf("portfolio: %v", get(d, "me.investor.portfolio"))
	}
	if get(d, "me.borrower") != nil {
		t.Fatalf("investor has no borrower side: %v", get(d, "me.borrower"))
	}
}

func TestMeRequiresAuth(t *testing.T) {
	e := newEnv(t)
	r := e.do("", `{ me { id } }`, nil)
	if r.code(0) != "UNAUTHENTICATED" || r.Data != nil {
		t.Fatalf("want UNAUTHENTICATED, got %s", r.Body)
	}
	for _, q := range []string{`{ loans { totalCount } }`, `{ chats { edges { cursor } } }`, `{ notifications { totalCount } }`,
		`{ borrowers { totalCount } }`} {
		if r := e.do("", q, nil); r.code(0) != "UNAUTHENTICATED" {
			t.Fatalf("%s: want UNAUTHENTICATED, got %s", q, r.Body)
		}
	}
}

func TestLoansMarketplace(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	tok := w.tokens["inv2"]
	ids := func(d map[string]any) []string {
		var out []string
		for _, ed := range list(d, "loans.edges") {
			out = append(out, str(ed, "node.id"))
		}
		return out
	}
	L := func(k string) string { return gid(lending.KindLoan, w.ids["loan:"+k]) }
	// default: FUNDING, newest first
	d := e.ok(tok, `{ loans { totalCount edges { node { id status } } } }`, nil)
	if got, want := fmt.Sprint(ids(d)), fmt.Sprint([]string{L("L1"), L("L2"), L("L5")}); got != want {
		t.Fatalf("default order %v, want %v", got, want)
	}
	if num(d, "loans.totalCount") != 3 {
		t.Fatalf("totalCount %v", get(d, "loans.totalCount"))
	}
	cases := []struct {
		args string
		want []string
	}{
		{`filter: {status: [ACTIVE, CANCELLED]}`, []string{L("L3"), L("L4")}},
		{`filter: {grade: [C, D]}`, []string{L("L2"), L("L5")}},
		{`filter: {minAnnualRate: 0.29}`, []string{L("L2"), L("L5")}},
		{`filter: {maxTermMonths: 12}`, []string{L("L1")}},
		{`filter: {status: []}, orderBy: {field: AMOUNT, direction: ASC}`, []string{L("L1"), L("L3"), L("L2"), L("L4"), L("L5")}},
		{`orderBy: {field: ANNUAL_RATE, direction: DESC}`, []string{L("L5"), L("L2"), L("L1")}},
		{`orderBy: {field: FUNDING_DEADLINE, direction: ASC}`, []string{L("L5"), L("L2"), L("L1")}},
		{`orderBy: {field: CREATED_AT, direction: ASC}`, []string{L("L5"), L("L2"), L("L1")}},
	}
	for _, c := range cases {
		d := e.ok(tok, `{ loans(`+c.args+`) { edges { node { id } } } }`, nil)
		if got, want := fmt.Sprint(ids(d)), fmt.Sprint(c.want); got != want {
			t.Errorf("loans(%s) = %v, want %v", c.args, got, want)
		}
	}
	// every Loan field
	d = e.ok(tok, `query($id: ID!) { loan(id: $id) { id amount fundedAmount termMonths annualRate grade purpose status fundingDeadline
		createdAt investorCount borrower { displayName grade } installments { number } investments(first: 2) { totalCount
		pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { node { amount investor { displayName } } } } } }`,
		map[string]any{"id": L("L1")})
	if str(d, "loan.amount") != "1000.00" || str(d, "loan.fundedAmount") != "175.00" || get(d, "loan.annualRate") != 0.21 ||
		num(d, "loan.investorCount") != 2 || num(d, "loan.investments.totalCount") != 3 || str(d, "loan.borrower.displayName") != "Carla Tomadora" {
		t.Fatalf("loan: %v", d)
	}
	if get(d, "loan.investments.pageInfo.hasNextPage") != true || get(d, "loan.investments.pageInfo.hasPreviousPage") != false {
		t.Fatalf("pageInfo: %v", get(d, "loan.investments.pageInfo"))
	}
	// the second page of the nested connection
	d = e.ok(tok, `query($id: ID!, $after: String) { loan(id: $id) { investments(first: 2, after: $after) { edges { node { amount } }
		pageInfo { hasNextPage hasPreviousPage } } } }`, map[string]any{"id": L("L1"), "after": str(d, "loan.investments.pageInfo.endCursor")})
	if len(list(d, "loan.investments.edges")) != 1 || str(d, "loan.investments.edges.0.node.amount") != "25.00" ||
		get(d, "loan.investments.pageInfo.hasNextPage") != false || get(d, "loan.investments.pageInfo.hasPreviousPage") != true {
		t.Fatalf("page 2: %v", d)
	}
	d = e.ok(tok, `query($id: ID!) { loan(id: $id) { installments { number dueDate principal interest total paid status } } }`,
		map[string]any{"id": L("L3")})
	if len(list(d, "loan.installments")) != 3 || str(d, "loan.installments.0.total") != "342.50" || str(d, "loan.installments.0.status") != "PENDING" {
		t.Fatalf("installments: %v", d)
	}
	// a loan that does not exist, and an id of another type
	for _, id := range []string{gid(lending.KindLoan, 999999), gid(lending.KindUser, w.users["bor1"])} {
		if r := e.do(tok, `query($id: ID!) { loan(id: $id) { id } }`, map[string]any{"id": id}); r.code(0) != "NOT_FOUND" {
			t.Fatalf("loan(%s): %s", id, r.Body)
		}
	}
	if r := e.do(tok, `{ loans(filter: {minAnnualRate: -1}) { totalCount } }`, nil); r.code(0) != "BAD_USER_INPUT" {
		t.Fatalf("negative rate: %s", r.Body)
	}
}

func TestBorrowersQuery(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	tok := w.tokens["inv1"]
	d := e.ok(tok, `{ borrowers { totalCount edges { node { displayName grade loans(status: [FUNDING]) { totalCount } } } } }`, nil)
	if num(d, "borrowers.totalCount") != 2 || str(d, "borrowers.edges.0.node.displayName") != "Carla Tomadora" ||
		num(d, "borrowers.edges.0.node.loans.totalCount") != 2 {
		t.Fatalf("borrowers: %v", d)
	}
	d = e.ok(tok, `{ borrowers(search: "dieg") { totalCount edges { node { displayName } } } }`, nil)
	if num(d, "borrowers.totalCount") != 1 || str(d, "borrowers.edges.0.node.displayName") != "Diego Tomador" {
		t.Fatalf("search: %v", d)
	}
	d = e.ok(tok, `{ borrowers(search: "%") { totalCount } }`, nil)
	if num(d, "borrowers.totalCount") != 0 {
		t.Fatalf("a %% search must match literally: %v", d)
	}
	d = e.ok(tok, `query($g: [RiskGrade!]) { borrowers(grade: $g) { totalCount } }`, map[string]any{"g": []string{"E"}})
	_ = d
}

func TestChatsAndNotifications(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	d := e.ok(w.tokens["inv1"], `{ chats { edges { node { id participants { name } loan { id } unreadCount
		lastMessage { body sender { name } clientMessageId }
		messages(last: 2) { edges { node { body chat { id } } } pageInfo { hasPreviousPage hasNextPage startCursor } } } } } }`, nil)
	if len(list(d, "chats.edges")) != 1 || num(d, "chats.edges.0.node.unreadCount") != 2 ||
		str(d, "chats.edges.0.node.lastMessage.body") != "E a taxa?" || str(d, "chats.edges.0.node.lastMessage.clientMessageId") != "c-3" ||
		len(list(d, "chats.edges.0.node.participants")) != 2 {
		t.Fatalf("chats: %v", d)
	}
	msgs := list(d, "chats.edges.0.node.messages.edges")
	if len(msgs) != 2 || str(msgs[0], "node.body") != "12 meses." || str(msgs[1], "node.body") != "E a taxa?" {
		t.Fatalf("messages newest last: %v", msgs)
	}
	if get(d, "chats.edges.0.node.messages.pageInfo.hasPreviousPage") != true {
		t.Fatalf("older messages exist: %v", get(d, "chats.edges.0.node.messages.pageInfo"))
	}
	// page backwards
	d2 := e.ok(w.tokens["inv1"], `query($b: String) { chats { edges { node { messages(last: 2, before: $b) { edges { node { body } }
		pageInfo { hasPreviousPage hasNextPage } } } } } }`, map[string]any{"b": str(d, "chats.edges.0.node.messages.pageInfo.startCursor")})
	if m := list(d2, "chats.edges.0.node.messages.edges"); len(m) != 1 || str(m[0], "node.body") != "Olá! Qual o prazo?" {
		t.Fatalf("older page: %v", d2)
	}
	if get(d2, "chats.edges.0.node.messages.pageInfo.hasNextPage") != true || get(d2, "chats.edges.0.node.messages.pageInfo.hasPreviousPage") != false {
		t.Fatalf("older page info: %v", d2)
	}
	// the borrower read nothing of the investor's: one unread
	d = e.ok(w.tokens["bor1"], `{ chats { edges { node { unreadCount } } } }`, nil)
	if num(d, "chats.edges.0.node.unreadCount") != 1 {
		t.Fatalf("bor1 unread: %v", d)
	}
	if d := e.ok(w.tokens["inv2"], `{ chats { edges { node { id } } pageInfo { hasNextPage endCursor } } }`, nil); len(list(d, "chats.edges")) != 0 {
		t.Fatalf("inv2 has no chats: %v", d)
	}

	d = e.ok(w.tokens["inv1"], `{ notifications { totalCount edges { node { id kind title body loan { id } readAt createdAt } } } }`, nil)
	if num(d, "notifications.totalCount") != 2 || str(d, "notifications.edges.0.node.kind") != "INVESTMENT_CONFIRMED" ||
		get(d, "notifications.edges.0.node.readAt") != nil || get(d, "notifications.edges.1.node.readAt") == nil {
		t.Fatalf("notifications: %v", d)
	}
	d = e.ok(w.tokens["inv1"], `{ notifications(unreadOnly: true) { totalCount edges { node { kind } } } }`, nil)
	if num(d, "notifications.totalCount") != 1 || len(list(d, "notifications.edges")) != 1 {
		t.Fatalf("unread: %v", d)
	}
}

func TestNodeResolvesEveryType(t *testing.T) {
	e := newEnv(t)
	w := seedWorld(t, e)
	cases := []struct {
		id, typ, viewer string
	}{
		{gid(lending.KindUser, w.users["bor1"]), "User", "inv1"},
		{gid(lending.KindInvestor, w.ids["investor:inv1"]), "Investor", "bor1"},
		{gid(lending.KindBorrower, w.ids["borrower:bor1"]), "Borrower", "inv1"},
		{gid(lending.KindLoan, w.ids["loan:L1"]), "Loan", "inv2"},
		{gid(lending.KindInvestment, w.ids["investment:a"]), "Investment", "inv2"},
		{gid(lending.KindWallet, w.ids["wallet:inv1"]), "Wallet", "inv1"},
		{gid(lending.KindLedgerEntry, w.ids["entry:inv1"]), "LedgerEntry", "inv1"},
		{gid(lending.KindDeposit, w.ids["deposit:inv1"]), "Deposit", "inv1"},
		{gid(lending.KindWithdrawal, w.ids["withdrawal:inv2"]), "Withdrawal", "inv2"},
		{gid(lending.KindChat, w.ids["chat"]), "Chat", "bor1"},
		{gid(lending.KindMessage, w.ids["msg2"]), "Message", "inv1"},
		{gid(lending.KindNotification, w.ids["notif:bor1"]), "Notification", "bor1"},
	}
	for _, c := range cases {
		d := e.ok(w.tokens[c.viewer], `query($id: ID!) { node(id: $id) { __typename id
			... on Deposit { amount status txid brCode expiresAt createdAt }
			... on Withdrawal { wAmount: amount pixKey wStatus: status createdAt } } }`, map[string]any{"id": c.id})
		if str(d, "node.__typename") != c.typ || str(d, "node.id") != c.id {
			t.Errorf("node(%s) = %v, want a %s", c.id, d, c.typ)
		}
	}
	for _, bad := range []string{"", "not-an-id", gid(lending.KindLoan, 0)} {
		if r := e.do(w.tokens["inv1"], `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": bad}); r.code(0) != "BAD_USER_INPUT" {
			t.Errorf("node(%q): %s", bad, r.Body)
		}
	}
	if r := e.do(w.tokens["inv1"], `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": gid(lending.KindLoan, 424242)}); r.code(0) != "NOT_FOUND" {
		t.Errorf("missing loan: %s", r.Body)
	}
}
