// Package demo fills an empty Mutuo database with data worth exploring:
// investors and borrowers with Brazilian names and incomes, Pix deposits and
// withdrawals, about 65 loans in every status that persists, investments from
// several investors per loan, repayments, the scheduler's cancellations,
// late installments and defaults, chats with messages, and the notifications
// all of that produces.
//
// Everything that moves money goes through the same store methods the API
// and the Pix webhook use (signUp, createDeposit + the webhook's
// ApplyPixPayment, requestLoan, invest, repayLoan, requestWithdrawal, the
// scheduler), so every wallet's ledger entries sum to its balance and every
// invariant of the ledger holds, exactly as in production. History is made
// by moving the clock: Load replays about 200 days of activity in
// chronological order, passing each operation its own "now".
//
// FUNDED never appears: the investment that commits a loan's last centavo
// funds and disburses it in one transaction, so FUNDED is transient and a
// fully funded loan rests in ACTIVE.
//
// The data is deterministic apart from password salts and the timestamps the
// store takes from the database's clock: a fixed seed drives every choice.
package demo

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mutuo/auth"
	"mutuo/lending"
	"mutuo/pix"
	"mutuo/store"
)

// Password is the password of every demo account.
const Password = "mutuo-demo-123"

// The demo accounts whose credentials Load returns.
const (
	InvestorEmail = "investor@mutuo.dev"
	BorrowerEmail = "borrower@mutuo.dev"
)

// Account is an email and a password that sign in.
type Account struct {
	Email    string
	Password string
}

// Credentials are the demo accounts worth signing in as: an investor with a
// portfolio across every loan status, and a borrower with loans in several
// states; both have a wallet history, chats and notifications.
type Credentials struct {
	Investor Account
	Borrower Account
}

// seed fixes every random choice of the demo data.
const seed1, seed2 = 20240601, 0x6d7574756f // "mutuo"

// lockKey is the session advisory lock that serializes Load across instances
// starting at once.
const lockKey = 0x6d75_7475_6f64_656d // "mutuodem"

// Load creates the demo data when the database has no users other than
// admins, and returns the demo credentials; otherwise it changes nothing and
// returns nil, nil. It is safe to call from several instances at once (a
// session advisory lock serializes them; the later ones find users and do
// nothing). now is the present of the data: history is laid out in the 205
// days before it and some loans are still funding after it. Demo accounts
// sign in with Password. An error leaves whatever was created so far (each
// step is its own transaction, as through the API); it is meant for empty
// development databases.
func Load(ctx context.Context, s *store.Store, a *auth.Service, psp pix.PSP, now time.Time) (*Credentials, error) {
	if s == nil || a == nil || psp == nil {
		return nil, errors.New("demo: a store, an auth service and a PSP are required")
	}
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("demo: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockKey)); err != nil {
		return nil, fmt.Errorf("demo: advisory lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must go even when ctx is cancelled.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(lockKey)); err != nil {
			conn.Conn().Close(uctx) // a closed session drops its locks
		}
	}()
	var hasUsers bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE NOT ('ADMIN' = ANY (roles)))`).Scan(&hasUsers); err != nil {
		return nil, fmt.Errorf("demo: check for users: %w", err)
	}
	if hasUsers {
		return nil, nil
	}
	l := &loader{s: s, a: a, psp: psp, now: now.UTC(), rng: rand.New(rand.NewPCG(seed1, seed2))}
	if err := l.run(ctx); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return &Credentials{
		Investor: Account{Email: InvestorEmail, Password: Password},
		Borrower: Account{Email: BorrowerEmail, Password: Password},
	}, nil
}

// ---------------------------------------------------------------- people

type person struct {
	name   string
	email  string
	income lending.Money // borrowers only
	cpf    string        // Pix key for withdrawals
	user   *lending.User
	v      lending.Viewer
	demo   bool
}

// investorNames and borrowerNames: the first of each is the demo account.
var investorNames = []string{
	"Helena Duarte", "Marcos Vinícius Albuquerque", "Beatriz Carvalho", "Ricardo Tavares",
	"Fernanda Lima", "Gustavo Pereira", "Juliana Moreira", "Eduardo Fonseca",
	"Camila Rezende", "Paulo Henrique Siqueira", "Renata Barbosa", "Thiago Moura",
}

var borrowerNames = []string{
	"Rafael Nogueira", "Ana Clara Souza", "João Pedro Santos", "Maria Eduarda Oliveira",
	"Lucas Ferreira", "Gabriela Rodrigues", "Mateus Almeida", "Larissa Costa",
	"Felipe Gomes", "Bruna Ribeiro", "Diego Martins", "Aline Araújo",
	"Rodrigo Barros", "Patrícia Cardoso", "Leandro Teixeira", "Vanessa Correia",
	"André Cavalcanti", "Tatiane Dias", "Carlos Eduardo Pinto", "Priscila Nascimento",
	"Vinícius Rocha", "Jéssica Freitas", "Roberto Azevedo", "Daniela Monteiro",
	"Wellington Batista",
}

var purposes = []string{
	"Reforma da cozinha e troca dos armários",
	"Capital de giro para a padaria do bairro",
	"Compra de uma moto para fazer entregas",
	"Quitar a dívida do cartão de crédito com juros menores",
	"Pós-graduação em gestão de projetos",
	"Tratamento odontológico (implantes)",
	"Equipamentos para o salão de beleza",
	"Despesas do casamento",
	"Notebook novo para trabalhar como designer",
	"Estoque de fim de ano para a loja online",
	"Instalação de energia solar em casa",
	"Reforma do food truck",
	"Curso de inglês e intercâmbio curto",
	"Conserto do carro usado para trabalho por aplicativo",
	"Ampliação da oficina mecânica",
	"Compra de máquinas de costura para o ateliê",
	"Mudança para outra cidade por causa do novo emprego",
	"Móveis para o primeiro apartamento",
	"Forno industrial para a pizzaria",
	"Cirurgia veterinária do cachorro",
	"Câmeras e lentes para o estúdio de fotografia",
	"Reforma do telhado antes das chuvas",
	"Estoque de açaí e freezer novo para a lanchonete",
	"Carrinho de café para eventos",
	"Consolidação de dívidas com o banco",
	"Placas de drywall e materiais para a obra",
	"Equipamentos de academia para o estúdio de pilates",
	"Ar-condicionado para a sala de aula de reforço",
	"Bicicleta elétrica para entregas",
	"Abertura de um quiosque no shopping",
}

func (l *loader) signUpAll(ctx context.Context) error {
	mk := func(name, email string, roles []lending.Role, income *lending.Money, demo bool) (*person, error) {
		sess, err := l.a.SignUp(ctx, auth.SignUpInput{Name: name, Email: email, Password: Password, Roles: roles, MonthlyIncome: income})
		if err != nil {
			return nil, fmt.Errorf("sign up %s: %w", email, err)
		}
		p := &person{name: name, email: email, cpf: l.cpf(), user: sess.User, demo: demo,
			v: lending.Viewer{UserID: sess.User.ID, Roles: sess.User.Roles}}
		if income != nil {
			p.income = *income
		}
		return p, nil
	}
	for i, name := range investorNames {
		email := emailFor(name)
		if i == 0 {
			email = InvestorEmail
		}
		p, err := mk(name, email, []lending.Role{lending.RoleInvestor}, nil, i == 0)
		if err != nil {
			return err
		}
		l.investors = append(l.investors, p)
	}
	for i, name := range borrowerNames {
		email := emailFor(name)
		income := l.income()
		if i == 0 {
			email, income = BorrowerEmail, 12_800_00 // grade C: an ordinary borrower
		}
		p, err := mk(name, email, []lending.Role{lending.RoleBorrower}, &income, i == 0)
		if err != nil {
			return err
		}
		l.borrowers = append(l.borrowers, p)
	}
	return nil
}

// income draws a monthly income from a rough Brazilian middle-class spread:
// R$ 2.200 to R$ 30.000, rounded to R$ 50.
func (l *loader) income() lending.Money {
	tiers := [][2]int{{2_200, 4_500}, {4_500, 9_000}, {9_000, 16_000}, {16_000, 30_000}}
	t := tiers[[]int{0, 1, 1, 1, 2, 2, 2, 3, 3}[l.rng.IntN(9)]]
	reais := t[0] + l.rng.IntN(t[1]-t[0])
	return lending.Money(reais/50*50) * 100
}

// cpf draws a CPF with valid check digits (a Pix key).
func (l *loader) cpf() string {
	d := make([]int, 11)
	for i := 0; i < 9; i++ {
		d[i] = l.rng.IntN(10)
	}
	for k := 9; k <= 10; k++ {
		sum := 0
		for i := 0; i < k; i++ {
			sum += d[i] * (k + 1 - i)
		}
		r := sum * 10 % 11
		if r == 10 {
			r = 0
		}
		d[k] = r
	}
	var b strings.Builder
	for _, x := range d {
		b.WriteByte(byte('0' + x))
	}
	return b.String()
}

var unaccent = strings.NewReplacer("á", "a", "à", "a", "â", "a", "ã", "a", "é", "e", "ê", "e",
	"í", "i", "ó", "o", "ô", "o", "õ", "o", "ú", "u", "ü", "u", "ç", "c")

func emailFor(name string) string {
	parts := strings.Fields(strings.ToLower(unaccent.Replace(name)))
	return strings.Join(parts, ".") + "@demo.mutuo.dev"
}

// ---------------------------------------------------------------- plans

// fate is what becomes of a loan. FUNDED does not appear: in Mutuo the last
// investment funds and disburses a loan in one transaction, so FUNDED is
// transient and no loan ever rests in it; a fully funded loan is ACTIVE.
type fate int

const (
	fateFunding   fate = iota // open for investment now, partly funded
	fateCancelled             // partly funded, deadline passed: the scheduler cancels it
	fateActive                // funded and disbursed, installments paid on time
	fateLate                  // funded, the latest installments unpaid (< 90 days): ACTIVE with LATE installments
	fateRepaid                // every installment paid: REPAID
	fateDefaulted             // funded, then unpaid for more than 90 days: DEFAULTED
)

type plannedInvestment struct {
	investor *person
	amount   lending.Money
	at       time.Time
}

type loanPlan struct {
	n           int
	borrower    *person
	amount      lending.Money
	term        int
	purpose     string
	requestAt   time.Time
	fate        fate
	investments []plannedInvestment
	payUntil    time.Time // installments whose payment would fall after this stay unpaid
	payoffAt    int       // > 0: pay everything left at this installment number
	id          int64     // once requested
}

// day returns a time d days before now during Brazilian business hours
// (09:00-20:00 in São Paulo, UTC-3), never after now.
func (l *loader) day(d int) time.Time {
	t := l.now.Truncate(24*time.Hour).AddDate(0, 0, -d).Add(12*time.Hour + time.Duration(l.rng.IntN(11*60))*time.Minute)
	if !t.Before(l.now) {
		t = l.now.Add(-time.Duration(10+l.rng.IntN(300)) * time.Minute)
	}
	return t
}

// plan lays out every loan: who asks for how much, when, who invests and
// what becomes of it.
func (l *loader) plan() {
	demoB, demoI := l.borrowers[0], l.investors[0]
	others := l.borrowers[1:]
	busy := map[*person][]time.Time{} // request times per borrower
	free := func(b *person, at time.Time) bool {
		for _, t := range busy[b] {
			if d := at.Sub(t); d > -16*24*time.Hour && d < 16*24*time.Hour {
				return false // at most one loan in FUNDING per borrower at a time
			}
		}
		return true
	}
	add := func(b *person, at time.Time, f fate, amount lending.Money, term int, purpose string) *loanPlan {
		if b == nil {
			perm := l.rng.Perm(len(others))
			b = others[perm[0]] // if nobody is free (never, with these numbers)
			for _, i := range perm {
				if free(others[i], at) {
					b = others[i]
					break
				}
			}
		}
		if amount == 0 {
			amount = l.loanAmount(b.income)
		}
		if purpose == "" {
			purpose = purposes[l.rng.IntN(len(purposes))]
		}
		busy[b] = append(busy[b], at)
		p := &loanPlan{n: len(l.plans) + 1, borrower: b, amount: amount, term: term, purpose: purpose, requestAt: at, fate: f}
		l.plans = append(l.plans, p)
		return p
	}
	termBetween := func(lo, hi int) int { return lo + l.rng.IntN(hi-lo+1) }

	// The demo borrower: a repaid loan, an active one paid on time, one that
	// was cancelled, and one funding now; the demo investor is in all of them.
	add(demoB, l.day(198), fateRepaid, 5_000_00, 4, "Reforma do banheiro e da área de serviço")
	l.demoActive = add(demoB, l.day(130), fateActive, 15_000_00, 12, "Capital de giro para a oficina de bicicletas")
	add(demoB, l.day(52), fateCancelled, 9_000_00, 10, "Equipamento de som para eventos")
	add(demoB, l.day(3), fateFunding, 8_000_00, 18, "Segunda oficina de bicicletas no centro")

	// Repaid: requested 200 to 185 days ago, short terms that ended before now.
	for i := 0; i < 12; i++ {
		d := 200 - i - l.rng.IntN(4)
		p := add(nil, l.day(d), fateRepaid, 0, termBetween(3, min(6, (d-15)/31)), "")
		if i == 3 || i == 8 {
			p.payoffAt = 2 // paid off early, all at once
		}
	}
	// Defaulted: funded 190 to 166 days ago, at most one installment paid.
	for i := 0; i < 5; i++ {
		add(nil, l.day(190-6*i), fateDefaulted, 0, termBetween(6, 12), "")
	}
	// Active: requested 165 to 21 days ago, terms running past now; a few
	// stopped paying recently, so they have LATE installments.
	for i := 0; i < 17; i++ {
		d := 165 - i*9
		f := fateActive
		if i%4 == 1 && d > 75 {
			f = fateLate
		}
		add(nil, l.day(d), f, 0, termBetween(max(6, d/30+2), 36), "")
	}
	// Cancelled: partly funded, deadline passed.
	for i := 0; i < 6; i++ {
		add(nil, l.day(95-12*i), fateCancelled, 0, termBetween(6, 24), "")
	}
	// Funding now: one per remaining borrower (a borrower has at most one
	// loan in FUNDING at a time), requested in the last 13 days.
	for _, b := range others {
		if at := l.day(l.rng.IntN(14)); free(b, at) {
			add(b, at, fateFunding, 0, termBetween(6, 36), "")
		}
	}

	for _, p := range l.plans {
		l.planInvestments(p, demoI)
		switch p.fate {
		case fateRepaid:
			p.payUntil = l.now
		case fateActive:
			p.payUntil = l.now
		case fateLate:
			p.payUntil = l.now.AddDate(0, 0, -(35 + l.rng.IntN(20)))
		case fateDefaulted:
			p.payUntil = p.requestAt.AddDate(0, 0, l.rng.IntN(2)*40) // pays none or the first one
		}
	}
}

// loanAmount is between half and three times the monthly income, in
// multiples of R$ 100, within the platform's limits.
func (l *loader) loanAmount(income lending.Money) lending.Money {
	a := int64(income) * int64(50+l.rng.IntN(250)) / 100
	a = a / 100_00 * 100_00
	return min(max(lending.Money(a), 1_000_00), 60_000_00)
}

// planInvestments chooses the investors and amounts of a loan: a full
// funding within a few days for loans that will be disbursed, and 15-85%
// for loans that are funding now or will be cancelled. Amounts are
// multiples of R$ 25 (the minimum investment), one investor at most once.
func (l *loader) planInvestments(p *loanPlan, demoI *person) {
	full := p.fate != fateFunding && p.fate != fateCancelled
	units := int(p.amount / lending.MinInvestment)
	target := units
	var window time.Duration
	if full {
		window = time.Duration(20+l.rng.IntN(100)) * time.Hour
	} else {
		target = units * (15 + l.rng.IntN(71)) / 100
		window = 13 * 24 * time.Hour
		// (investments start 30 minutes after the request and end before now)
		if until := l.now.Sub(p.requestAt) - 40*time.Minute; p.fate == fateFunding && until < window {
			window = until
		}
	}
	k := 2 + l.rng.IntN(6)
	if p.fate == fateFunding && p.n%9 == 0 {
		k = 1 // a few new loans have a single investor so far
	}
	k = min(k, target, len(l.investors))
	if k == 0 || window <= 0 {
		return
	}
	order := l.rng.Perm(len(l.investors))
	who := make([]*person, 0, k)
	if p.borrower.demo || l.rng.IntN(2) == 0 {
		who = append(who, demoI)
	}
	for _, i := range order {
		if len(who) == k {
			break
		}
		if l.investors[i] != demoI {
			who = append(who, l.investors[i])
		}
	}
	l.rng.Shuffle(len(who), func(i, j int) { who[i], who[j] = who[j], who[i] })
	// Split target units: one each, the rest by random weights; the last
	// investor of a full funding takes the remainder.
	weights := make([]int, len(who))
	sum := 0
	for i := range weights {
		weights[i] = 1 + l.rng.IntN(10)
		sum += weights[i]
	}
	rest, given := target-len(who), 0
	times := make([]time.Duration, len(who))
	for i := range times {
		times[i] = time.Duration(l.rng.Int64N(int64(window)))
	}
	slices.Sort(times)
	for i, inv := range who {
		u := 1 + rest*weights[i]/sum
		if i == len(weights)-1 {
			u = target - given
		}
		given += u
		at := p.requestAt.Add(30*time.Minute + times[i])
		p.investments = append(p.investments, plannedInvestment{investor: inv, amount: lending.Money(u) * lending.MinInvestment, at: at})
	}
}

// ---------------------------------------------------------------- events

type event struct {
	at  time.Time
	seq int
	run func(ctx context.Context, at time.Time) error
}

type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type loader struct {
	s   *store.Store
	a   *auth.Service
	psp pix.PSP
	now time.Time
	rng *rand.Rand

	investors, borrowers []*person
	plans                []*loanPlan
	demoActive           *loanPlan

	q    queue
	seq  int
	keys int
}

// at schedules fn at t; events after now are dropped (that is the future).
func (l *loader) at(t time.Time, fn func(ctx context.Context, at time.Time) error) {
	if t.After(l.now) {
		return
	}
	l.seq++
	heap.Push(&l.q, &event{at: t, seq: l.seq, run: fn})
}

func (l *loader) key(kind string) string {
	l.keys++
	return fmt.Sprintf("demo-%s-%d", kind, l.keys)
}

func (l *loader) run(ctx context.Context) error {
	if err := l.signUpAll(ctx); err != nil {
		return err
	}
	l.plan()
	start := l.now.Truncate(24*time.Hour).AddDate(0, 0, -206)

	// Investors bring money in first.
	for i, inv := range l.investors {
		amount := lending.Money(30_000+l.rng.IntN(90)*1_000) * 100
		if i == 0 {
			amount = 60_000_00
		}
		l.at(start.Add(13*time.Hour+time.Duration(l.rng.IntN(600))*time.Minute), func(ctx context.Context, at time.Time) error {
			return l.deposit(ctx, inv, amount, at)
		})
	}
	// The scheduler runs every night (03:00 in São Paulo) and once at now.
	for t := start.Add(6 * time.Hour); t.Before(l.now); t = t.AddDate(0, 0, 1) {
		l.at(t, l.tick)
	}
	l.at(l.now, l.tick)
	// Loans, and through them investments and repayments.
	for _, p := range l.plans {
		l.at(p.requestAt, func(ctx context.Context, at time.Time) error { return l.request(ctx, p, at) })
	}
	// A few investors take money out along the way.
	for i, inv := range l.investors {
		if i%3 != 0 {
			continue
		}
		l.at(l.day(20+l.rng.IntN(60)), func(ctx context.Context, at time.Time) error {
			w, err := l.wallet(ctx, inv)
			if err != nil {
				return err
			}
			if amount := w.Available() / 4 / 100_00 * 100_00; amount > 0 {
				return l.withdraw(ctx, inv, amount, at)
			}
			return nil
		})
	}

	for l.q.Len() > 0 {
		e := heap.Pop(&l.q).(*event)
		if err := e.run(ctx, e.at); err != nil {
			return fmt.Errorf("at %s: %w", e.at.Format(time.RFC3339), err)
		}
	}
	return l.chats(ctx)
}

func (l *loader) tick(ctx context.Context, at time.Time) error {
	if _, err := l.s.RunScheduler(ctx, at); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	return nil
}

func (l *loader) request(ctx context.Context, p *loanPlan, at time.Time) error {
	loan, err := l.s.RequestLoan(ctx, p.borrower.v, store.RequestLoanInput{Amount: p.amount, TermMonths: p.term, Purpose: p.purpose}, l.key("loan"), at)
	if err != nil {
		return fmt.Errorf("request loan %d of %s: %w", p.n, p.borrower.email, err)
	}
	p.id = loan.ID
	for _, pi := range p.investments {
		l.at(pi.at, func(ctx context.Context, at time.Time) error { return l.invest(ctx, p, pi, at) })
	}
	return nil
}

func (l *loader) invest(ctx context.Context, p *loanPlan, pi plannedInvestment, at time.Time) error {
	w, err := l.wallet(ctx, pi.investor)
	if err != nil {
		return err
	}
	if need := pi.amount - w.Available(); need > 0 {
		// Top up by Pix a little before: a round amount, at least R$ 10.000.
		top := max((need+5_000_00-1)/5_000_00*5_000_00, 10_000_00)
		if err := l.deposit(ctx, pi.investor, top, at.Add(-time.Duration(15+l.rng.IntN(60))*time.Minute)); err != nil {
			return err
		}
	}
	if _, err := l.s.Invest(ctx, pi.investor.v, p.id, pi.amount, l.key("inv"), at); err != nil {
		return fmt.Errorf("%s invests %v in loan %d (%d): %w", pi.investor.email, pi.amount, p.n, p.id, err)
	}
	loans, err := l.s.LoansByID(ctx, []int64{p.id})
	if err != nil {
		return err
	}
	if loans[p.id].Status == lending.LoanActive {
		return l.disbursed(ctx, p, at)
	}
	return nil
}

// disbursed plans what the borrower does with a disbursed loan: take most of
// the money out by Pix, then pay installments a few days before they are
// due until payUntil.
func (l *loader) disbursed(ctx context.Context, p *loanPlan, at time.Time) error {
	b := p.borrower
	if !b.demo || l.rng.IntN(2) == 0 {
		pct := lending.Money(70 + l.rng.IntN(26))
		amount := p.amount * pct / 100 / 100_00 * 100_00
		l.at(at.Add(time.Duration(2+l.rng.IntN(40))*time.Hour), func(ctx context.Context, at time.Time) error {
			return l.withdraw(ctx, b, amount, at)
		})
	}
	ins, err := l.s.InstallmentsByLoan(ctx, []int64{p.id})
	if err != nil {
		return err
	}
	for _, in := range ins[p.id] {
		payAt := in.DueDate.AddDate(0, 0, -(1 + l.rng.IntN(4))).Add(12*time.Hour + time.Duration(l.rng.IntN(600))*time.Minute)
		if payAt.After(p.payUntil) {
			break
		}
		all := p.payoffAt > 0 && in.Number == p.payoffAt
		l.at(payAt, func(ctx context.Context, at time.Time) error { return l.repay(ctx, p, all, at) })
		if all {
			break
		}
	}
	return nil
}

// repay pays the oldest installment still open (or, when all, everything
// still owed), first bringing money in by Pix if the wallet is short.
func (l *loader) repay(ctx context.Context, p *loanPlan, all bool, at time.Time) error {
	ins, err := l.s.InstallmentsByLoan(ctx, []int64{p.id})
	if err != nil {
		return err
	}
	var amount lending.Money
	for _, in := range ins[p.id] {
		if owed := in.Total() - in.Paid; owed > 0 {
			amount += owed
			if !all {
				break
			}
		}
	}
	if amount == 0 {
		return nil
	}
	w, err := l.wallet(ctx, p.borrower)
	if err != nil {
		return err
	}
	if need := amount - w.Available(); need > 0 {
		top := (need + 100_00 - 1) / 100_00 * 100_00
		if err := l.deposit(ctx, p.borrower, top, at.Add(-time.Duration(20+l.rng.IntN(120))*time.Minute)); err != nil {
			return err
		}
	}
	if _, err := l.s.RepayLoan(ctx, p.borrower.v, p.id, amount, l.key("repay"), at); err != nil {
		return fmt.Errorf("%s repays %v of loan %d (%d): %w", p.borrower.email, amount, p.n, p.id, err)
	}
	return nil
}

func (l *loader) wallet(ctx context.Context, p *person) (*lending.Wallet, error) {
	ws, err := l.s.WalletsByUserID(ctx, p.v, []int64{p.user.ID})
	if err != nil {
		return nil, fmt.Errorf("wallet of %s: %w", p.email, err)
	}
	w, ok := ws[p.user.ID]
	if !ok {
		return nil, fmt.Errorf("wallet of %s: missing", p.email)
	}
	return w, nil
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func (l *loader) alnum(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[l.rng.IntN(len(alnum))]
	}
	return string(b)
}

// deposit creates a Pix charge through the PSP, as createDeposit does, and
// pays it a few minutes later through ApplyPixPayment, the path of the PSP's
// webhook.
func (l *loader) deposit(ctx context.Context, p *person, amount lending.Money, at time.Time) error {
	txid := l.alnum(pix.TxidLen)
	d, err := l.s.CreateDeposit(ctx, p.v, amount, l.key("dep"), func(ctx context.Context, amount lending.Money) (store.DepositCharge, error) {
		res, err := l.psp.CreateCharge(ctx, pix.Charge{Txid: txid, Amount: amount, Description: "Depósito na carteira Mutuo"})
		if err != nil {
			return store.DepositCharge{}, err
		}
		return store.DepositCharge{Txid: res.Txid, BrCode: res.BRCode, ExpiresAt: at.Add(lending.DefaultDepositExpiry)}, nil
	})
	if err != nil {
		return fmt.Errorf("deposit %v for %s: %w", amount, p.email, err)
	}
	paidAt := at.Add(time.Duration(1+l.rng.IntN(8)) * time.Minute)
	// A real EndToEndId: "E", the payer's bank ISPB, yyyyMMddHHmm, 11 more.
	e2e := "E" + []string{"18236120", "60701190", "00360305", "60746948", "00000000"}[l.rng.IntN(5)] +
		paidAt.Format("200601021504") + l.alnum(11)
	raw, _ := json.Marshal(map[string]string{"endToEndId": e2e, "txid": d.Txid, "valor": amount.String(),
		"horario": paidAt.Format(time.RFC3339), "infoPagador": "Depósito Mutuo"})
	out, err := l.s.ApplyPixPayment(ctx, pix.Payment{EndToEndID: e2e, Txid: d.Txid, Amount: amount, PaidAt: paidAt, Raw: raw}, paidAt)
	if err != nil {
		return fmt.Errorf("pay deposit %s of %s: %w", d.Txid, p.email, err)
	}
	if out.Outcome != store.PixCredited {
		return fmt.Errorf("pay deposit %s of %s: outcome %s", d.Txid, p.email, out.Outcome)
	}
	return nil
}

// withdraw sends money to the person's CPF Pix key through the PSP, as
// requestWithdrawal does. (The store stamps withdrawals with the database's
// clock; at only orders the event.)
func (l *loader) withdraw(ctx context.Context, p *person, amount lending.Money, at time.Time) error {
	wd, err := l.s.RequestWithdrawal(ctx, p.v, amount, p.cpf, l.key("wd"), l.psp)
	if err != nil {
		return fmt.Errorf("withdraw %v for %s: %w", amount, p.email, err)
	}
	if wd.Status == lending.WithdrawalFailed {
		return fmt.Errorf("withdraw %v for %s: the PSP refused it", amount, p.email)
	}
	return nil
}

// ---------------------------------------------------------------- chats

type line struct {
	investor bool // sent by the investor, else by the borrower
	text     string
	after    time.Duration // after the previous message
}

// chats writes conversations between investors and borrowers with direct
// SQL in one transaction: the chat store methods (startChat, sendMessage,
// markChatRead) arrive with the realtime issue, and Load switches to them
// when they exist. It follows their rules: one chat per pair and loan with
// user_low < user_high, both members, last_message_at = the last message's
// time, read positions that leave some messages unread, and a NEW_MESSAGE
// notification for each message its recipient has not read.
func (l *loader) chats(ctx context.Context) error {
	demoI, demoB := l.investors[0], l.borrowers[0]
	type chat struct {
		inv, bor             *person
		loan                 *loanPlan
		start                time.Time
		lines                []line
		invUnread, borUnread int               // messages at the end the recipient has not read
		fixed                map[int]time.Time // times of some lines, instead of their after
	}
	var chats []chat
	var funding *loanPlan // the demo borrower's loan that is funding now
	for _, p := range l.plans {
		if p.borrower == demoB && p.fate == fateFunding {
			funding = p
		}
	}

	// The demo investor and the demo borrower about the borrower's active loan.
	chats = append(chats, chat{inv: demoI, bor: demoB, loan: l.demoActive, start: l.demoActive.requestAt.Add(3 * time.Hour),
		lines: []line{
			{true, "Olá, Rafael! Vi seu pedido para a oficina de bicicletas. Há quanto tempo a oficina funciona?", 0},
			{false, "Oi, Helena! Faz quatro anos. Hoje atendo umas 60 bicicletas por mês e tenho um funcionário.", 47 * time.Minute},
			{true, "Legal. E o capital de giro vai para quê, exatamente?", 2 * time.Hour},
			{false, "Estoque de peças (câmbios, freios e pneus) para não perder serviço por falta de peça, e um compressor novo.", 35 * time.Minute},
			{true, "Faz sentido. Vou investir uma parte. Boa sorte!", 20 * time.Hour},
			{false, "Muito obrigado pela confiança! O empréstimo foi liberado e as peças já chegaram.", 6 * 24 * time.Hour},
			{false, "Paguei a parcela deste mês adiantado. Qualquer dúvida é só chamar.", 0},
			{false, "Ah, e vou abrir uma segunda unidade no centro. Coloquei um novo pedido na plataforma.", 0},
		}, invUnread: 2, fixed: map[int]time.Time{
			6: l.now.AddDate(0, 0, -9).Add(-5 * time.Hour),
			7: funding.requestAt.Add(50 * time.Minute),
		}})
	// Another investor asks the demo borrower about the loan funding now.
	chats = append(chats, chat{inv: l.investors[3], bor: demoB, loan: funding, start: funding.requestAt.Add(90 * time.Minute),
		lines: []line{
			{true, "Boa tarde! A segunda oficina vai ter o mesmo tipo de serviço da primeira?", 0},
			{false, "Boa tarde! Sim, e também venda de bicicletas usadas revisadas.", 3 * time.Hour},
			{true, "E o ponto já está alugado?", 40 * time.Minute},
		}, borUnread: 1})
	// A general chat (no loan) that is all read.
	chats = append(chats, chat{inv: l.investors[5], bor: demoB, start: l.now.AddDate(0, 0, -75),
		lines: []line{
			{true, "Oi Rafael, tudo bem? Você faz revisão em bicicleta elétrica?", 0},
			{false, "Faço sim! Só a parte elétrica da bateria que eu mando para um parceiro.", 25 * time.Minute},
			{true, "Ótimo, vou levar a minha semana que vem.", 10 * time.Minute},
		}})
	// The demo investor with borrowers of loans she is in.
	var late, fundingOther *loanPlan
	for _, p := range l.plans {
		if p.fate == fateLate && (late == nil || !late.has(demoI) && p.has(demoI)) {
			late = p
		}
		if p.fate == fateFunding && !p.borrower.demo && p.has(demoI) && fundingOther == nil &&
			p.requestAt.Before(l.now.Add(-24*time.Hour)) {
			fundingOther = p
		}
	}
	if late != nil {
		inv := demoI
		if !late.has(demoI) {
			inv = late.investments[0].investor
		}
		chats = append(chats, chat{inv: inv, bor: late.borrower, loan: late, start: l.now.AddDate(0, 0, -12),
			lines: []line{
				{true, "Olá! Vi que a parcela do seu empréstimo está em atraso. Está tudo bem?", 0},
				{false, "Oi! Peço desculpas. Tive uma despesa médica inesperada este mês.", 5 * time.Hour},
				{false, "Devo regularizar assim que receber o salário, no dia 5.", 2 * time.Minute},
				{true, "Entendo, obrigado por avisar. Melhoras!", 1 * time.Hour},
			}})
	}
	if fundingOther != nil {
		first := strings.SplitN(fundingOther.borrower.name, " ", 2)[0]
		chats = append(chats, chat{inv: demoI, bor: fundingOther.borrower, loan: fundingOther, start: fundingOther.requestAt.Add(2 * time.Hour),
			lines: []line{
				{true, fmt.Sprintf("Olá, %s! Pode contar mais sobre o pedido (%s)?", first, strings.ToLower(fundingOther.purpose[:1])+fundingOther.purpose[1:]), 0},
				{false, "Claro! Já fiz um orçamento com três fornecedores e escolhi o mais barato. O valor cobre tudo.", 4 * time.Hour},
			}, invUnread: 1})
	}
	// More conversations between other investors and borrowers of loans
	// they invested in.
	questions := []line{ // before disbursement, in a cycle
		{true, "Olá! Qual é a sua renda principal hoje?", 0},
		{false, "Sou CLT há seis anos e faço alguns trabalhos extras nos fins de semana.", 2 * time.Hour},
		{true, "Obrigado pela resposta, vou investir.", 30 * time.Minute},
		{false, "Eu que agradeço!", 10 * time.Minute},
		{true, "Você já tem algum orçamento do que vai comprar?", 0},
		{false, "Tenho sim, fechei com um fornecedor da minha cidade que parcela a entrega.", 90 * time.Minute},
	}
	followUp := []line{ // after disbursement
		{true, "Tudo certo com o pagamento das parcelas?", 35 * 24 * time.Hour},
		{false, "Tudo certo, pago sempre uns dias antes do vencimento.", 3 * time.Hour},
		{true, "Ótimo, obrigado!", 20 * time.Minute},
	}
	n := 0
	for _, p := range l.plans {
		if n == 9 || p.borrower.demo || len(p.investments) == 0 || p == late || p == fundingOther {
			continue
		}
		if p.n%7 != 0 {
			continue
		}
		inv := p.investments[len(p.investments)-1].investor
		k := 2 + l.rng.IntN(3)
		off := 2 * l.rng.IntN(3)
		c := chat{inv: inv, bor: p.borrower, loan: p, start: p.requestAt.Add(time.Duration(30+l.rng.IntN(300)) * time.Minute)}
		for i := 0; i < k; i++ {
			c.lines = append(c.lines, questions[(off+i)%len(questions)])
		}
		if (p.fate == fateActive || p.fate == fateRepaid) && p.requestAt.Before(l.now.AddDate(0, 0, -45)) {
			c.lines = append(c.lines, followUp...)
		}
		if p.requestAt.After(l.now.AddDate(0, 0, -14)) && n%2 == 0 {
			if c.lines[len(c.lines)-1].investor {
				c.borUnread = 1
			} else {
				c.invUnread = 1
			}
		}
		chats = append(chats, c)
		n++
	}

	return pgx.BeginFunc(ctx, l.s.Pool(), func(tx pgx.Tx) error {
		// written as history, without events: numbered below for replays
		var msgIDs, notifIDs []int64
		for _, c := range chats {
			var loanID *int64
			if c.loan != nil {
				loanID = &c.loan.id
			}
			low, high := c.inv.user.ID, c.bor.user.ID
			if low > high {
				low, high = high, low
			}
			// Message times: from start, clamped to before now.
			times := make([]time.Time, len(c.lines))
			t := c.start
			for i, ln := range c.lines {
				t = t.Add(ln.after)
				if at, ok := c.fixed[i]; ok {
					t = at
				}
				times[i] = t
			}
			if last := times[len(times)-1]; !last.Before(l.now) {
				shift := last.Sub(l.now) + time.Duration(5+l.rng.IntN(120))*time.Minute
				for i := range times {
					times[i] = times[i].Add(-shift)
				}
			}
			var chatID int64
			if err := tx.QueryRow(ctx, `INSERT INTO chats (loan_id, user_low, user_high, last_message_at, created_at)
				VALUES ($1, $2, $3, $4, $5) RETURNING id`, loanID, low, high, times[len(times)-1], times[0]).Scan(&chatID); err != nil {
				return fmt.Errorf("insert chat: %w", err)
			}
			ids := make([]int64, len(c.lines))
			for i, ln := range c.lines {
				sender := c.bor
				if ln.investor {
					sender = c.inv
				}
				if err := tx.QueryRow(ctx, `INSERT INTO messages (chat_id, sender_id, body, client_message_id, created_at)
					VALUES ($1, $2, $3, $4, $5) RETURNING id`, chatID, sender.user.ID, ln.text, l.key("msg"), times[i]).Scan(&ids[i]); err != nil {
					return fmt.Errorf("insert message: %w", err)
				}
				msgIDs = append(msgIDs, ids[i])
			}
			// A member has read everything but the last `unread` messages
			// (which are from the other member).
			readUpTo := func(unread int) int64 {
				if i := len(ids) - 1 - unread; i >= 0 {
					return ids[i]
				}
				return 0
			}
			for _, m := range []struct {
				p      *person
				unread int
			}{{c.inv, c.invUnread}, {c.bor, c.borUnread}} {
				if _, err := tx.Exec(ctx, `INSERT INTO chat_members (chat_id, user_id, last_read_message_id) VALUES ($1, $2, $3)`,
					chatID, m.p.user.ID, readUpTo(m.unread)); err != nil {
					return fmt.Errorf("insert chat member: %w", err)
				}
				for i := len(ids) - m.unread; i < len(ids); i++ {
					from := c.bor
					if m.p == c.bor {
						from = c.inv
					}
					var nid int64
					if err := tx.QueryRow(ctx, `INSERT INTO notifications (user_id, kind, title, body, loan_id, created_at)
						VALUES ($1, 'NEW_MESSAGE', $2, $3, $4, $5) RETURNING id`,
						m.p.user.ID, store.NewMessageTitle(from.name), store.MessagePreview(c.lines[i].text), loanID, times[i]).Scan(&nid); err != nil {
						return fmt.Errorf("insert message notification: %w", err)
					}
					notifIDs = append(notifIDs, nid)
				}
			}
		}
		// People read most of their notifications: all but the latest four
		// (in the order they happened, which is id order) of each user are
		// marked read. Message notifications are read exactly when their
		// message is, so they were written unread only for unread messages.
		if _, err := tx.Exec(ctx, `
			UPDATE notifications n SET read_at = greatest(n.created_at, least(n.created_at + interval '3 hours', $1::timestamptz))
			FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id DESC) AS rn
			      FROM notifications WHERE kind <> 'NEW_MESSAGE') r
			WHERE n.id = r.id AND r.rn > 4 AND n.read_at IS NULL`, l.now); err != nil {
			return fmt.Errorf("mark notifications read: %w", err)
		}
		return store.NumberHistory(ctx, tx, msgIDs, notifIDs)
	})
}

// has reports whether inv takes part in p.
func (p *loanPlan) has(inv *person) bool {
	for _, pi := range p.investments {
		if pi.investor == inv {
			return true
		}
	}
	return false
}
