package pix

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"mutuo/lending"
)

// The two examples of WebhookPixBody in the API Pix v2.9.0 specification
// (components/examples/pixWebhook1 and pixWebhook2).
const specWebhook = `{
  "pix": [
    {
      "endToEndId": "E12345678202009091221kkkkkkkkkkk",
      "txid": "c3e0e7a4e7f1469a9f782d3d4999343c",
      "valor": "110.00",
      "horario": "2020-09-09T20:15:00.358Z",
      "infoPagador": "0123456789",
      "devolucoes": {
        "id": "123ABC",
        "rtrId": "D12345678202009091221abcdf098765",
        "valor": "10.00",
        "horario": {"solicitacao": "2020-09-09T20:15:00.358Z"},
        "status": "EM_PROCESSAMENTO"
      }
    },
    {
      "endToEndId": "E87654321202009091221dfghi123456",
      "txid": "971122d8f37211eaadc10242ac120002",
      "valor": "110.00",
      "horario": "2020-09-09T20:15:00.358Z",
      "infoPagador": "0123456789"
    }
  ]
}`

func TestParseWebhookSpecExample(t *testing.T) {
	got, err := ParseWebhook([]byte(specWebhook))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2020, 9, 9, 20, 15, 0, 358_000_000, time.UTC)
	want := []Payment{
		{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Txid: "c3e0e7a4e7f1469a9f782d3d4999343c", Amount: 11_000, PaidAt: at},
		{EndToEndID: "E87654321202009091221dfghi123456", Txid: "971122d8f37211eaadc10242ac120002", Amount: 11_000, PaidAt: at},
	}
	if len(got) != 2 {
		t.Fatalf("got %d payments", len(got))
	}
	for k := range want {
		g := got[k]
		if g.EndToEndID != want[k].EndToEndID || g.Txid != want[k].Txid || g.Amount != want[k].Amount ||
			!g.PaidAt.Equal(want[k].PaidAt) || g.PaidAt.Location() != time.UTC {
			t.Errorf("payment %d = %+v, want %+v", k, g, want[k])
		}
		var raw map[string]any
		if err := json.Unmarshal(g.Raw, &raw); err != nil || raw["infoPagador"] != "0123456789" {
			t.Errorf("payment %d raw = %s", k, g.Raw)
		}
	}
	if !strings.Contains(string(got[0].Raw), "devolucoes") {
		t.Error("raw lost fields")
	}
}

func item(fields string) string { return `{"pix":[{` + fields + `}]}` }

const (
	e2e   = `"endToEndId":"E12345678202009091221kkkkkkkkkkk"`
	valor = `"valor":"1.50"`
	hora  = `"horario":"2020-09-09T17:15:00-03:00"`
)

func TestParseWebhook(t *testing.T) {
	ok := []struct {
		name string
		body string
		want Payment
	}{
		{"no txid", item(e2e + "," + valor + "," + hora),
			Payment{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Amount: 150, PaidAt: time.Date(2020, 9, 9, 20, 15, 0, 0, time.UTC)}},
		{"empty txid", item(e2e + `,"txid":"",` + valor + "," + hora),
			Payment{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Amount: 150, PaidAt: time.Date(2020, 9, 9, 20, 15, 0, 0, time.UTC)}},
		{"null txid", item(e2e + `,"txid":null,` + valor + "," + hora),
			Payment{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Amount: 150, PaidAt: time.Date(2020, 9, 9, 20, 15, 0, 0, time.UTC)}},
		{"short txid", item(e2e + `,"txid":"a",` + valor + "," + hora),
			Payment{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Txid: "a", Amount: 150, PaidAt: time.Date(2020, 9, 9, 20, 15, 0, 0, time.UTC)}},
		{"big amount", item(e2e + `,"valor":"9999999999.99",` + hora),
			Payment{EndToEndID: "E12345678202009091221kkkkkkkkkkk", Amount: 999_999_999_999, PaidAt: time.Date(2020, 9, 9, 20, 15, 0, 0, time.UTC)}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWebhook([]byte(tt.body))
			if err != nil || len(got) != 1 {
				t.Fatalf("= %v, %v", got, err)
			}
			g := got[0]
			g.Raw = nil
			if g.EndToEndID != tt.want.EndToEndID || g.Txid != tt.want.Txid || g.Amount != tt.want.Amount || !g.PaidAt.Equal(tt.want.PaidAt) {
				t.Fatalf("= %+v, want %+v", g, tt.want)
			}
		})
	}
	if got, err := ParseWebhook([]byte(`{"pix":[]}`)); err != nil || len(got) != 0 {
		t.Errorf("empty list: %v, %v", got, err)
	}

	many := make([]string, MaxWebhookPayments+1)
	for k := range many {
		many[k] = `{` + e2e + "," + valor + "," + hora + `}`
	}
	bad := []struct{ name, body string }{
		{"empty", ``},
		{"not json", `pix`},
		{"array", `[]`},
		{"no pix", `{}`},
		{"null pix", `{"pix":null}`},
		{"pix not array", `{"pix":{}}`},
		{"trailing data", `{"pix":[]} {}`},
		{"trailing junk", `{"pix":[]}x`},
		{"null item", `{"pix":[null]}`},
		{"item not object", `{"pix":[1]}`},
		{"no endToEndId", item(valor + "," + hora)},
		{"short endToEndId", item(`"endToEndId":"E123",` + valor + "," + hora)},
		{"endToEndId symbol", item(`"endToEndId":"E12345678202009091221kkkkkkkkkk-",` + valor + "," + hora)},
		{"endToEndId number", item(`"endToEndId":12345678901234567890123456789012,` + valor + "," + hora)},
		{"txid too long", item(e2e + `,"txid":"` + strings.Repeat("a", 36) + `",` + valor + "," + hora)},
		{"txid symbol", item(e2e + `,"txid":"abc-def",` + valor + "," + hora)},
		{"no valor", item(e2e + "," + hora)},
		{"valor number", item(e2e + `,"valor":1.50,` + hora)},
		{"valor one decimal", item(e2e + `,"valor":"1.5",` + hora)},
		{"valor no decimals", item(e2e + `,"valor":"150",` + hora)},
		{"valor negative", item(e2e + `,"valor":"-1.50",` + hora)},
		{"valor zero", item(e2e + `,"valor":"0.00",` + hora)},
		{"valor 11 digits", item(e2e + `,"valor":"10000000000.00",` + hora)},
		{"valor comma", item(e2e + `,"valor":"1,50",` + hora)},
		{"no horario", item(e2e + "," + valor)},
		{"horario without zone", item(e2e + "," + valor + `,"horario":"2020-09-09T20:15:00"`)},
		{"horario date only", item(e2e + "," + valor + `,"horario":"2020-09-09"`)},
		{"horario garbage", item(e2e + "," + valor + `,"horario":"yesterday"`)},
		{"too many", `{"pix":[` + strings.Join(many, ",") + `]}`},
		{"one bad among good", `{"pix":[{` + e2e + "," + valor + "," + hora + `},{` + e2e + `,"valor":"x",` + hora + `}]}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWebhook([]byte(tt.body))
			if !lending.IsCode(err, lending.CodeBadUserInput) || got != nil {
				t.Fatalf("= %v, %v; want BAD_USER_INPUT", got, err)
			}
		})
	}
	if _, err := ParseWebhook(make([]byte, MaxWebhookBody+1)); !lending.IsCode(err, lending.CodeBadUserInput) {
		t.Errorf("huge body: %v", err)
	}
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(specWebhook))
	f.Add([]byte(item(e2e + "," + valor + "," + hora)))
	f.Add([]byte(`{"pix":[]}`))
	f.Add([]byte(`{"pix":[null,{}]}`))
	f.Add([]byte(`{"pix":[{"endToEndId":"E12345678202009091221kkkkkkkkkkk","valor":"00.01","horario":"2020-01-01T00:00:00+14:00"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := ParseWebhook(body)
		if err != nil {
			if ps != nil || !lending.IsCode(err, lending.CodeBadUserInput) {
				t.Fatalf("= %v, %v", ps, err)
			}
			return
		}
		for _, p := range ps {
			if len(p.EndToEndID) != 32 || p.Amount <= 0 || len(p.Txid) > 35 || p.PaidAt.Location() != time.UTC || !json.Valid(p.Raw) {
				t.Fatalf("accepted a bad payment %+v", p)
			}
		}
	})
}

func TestSignature(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(specWebhook)
	sig := Sign(secret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("Sign = %q", sig)
	}
	// RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
	if got := Sign([]byte("Jefe"), []byte("what do ya want for nothing?")); got != "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Errorf("RFC 4231 vector: %s", got)
	}
	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   bool
	}{
		{"valid", secret, body, sig, true},
		{"upper-case hex", secret, body, "sha256=" + strings.ToUpper(sig[7:]), true},
		{"spaces", secret, body, "  " + sig + " ", true},
		{"other body", secret, append(body, ' '), sig, false},
		{"other secret", []byte("s3creT"), body, sig, false},
		{"empty secret", nil, body, Sign(nil, body), false},
		{"no prefix", secret, body, sig[7:], false},
		{"other prefix", secret, body, "sha1=" + sig[7:], false},
		{"truncated", secret, body, sig[:len(sig)-2], false},
		{"extended", secret, body, sig + "00", false},
		{"not hex", secret, body, sig[:len(sig)-1] + "g", false},
		{"empty", secret, body, "", false},
	}
	for _, tt := range tests {
		if got := VerifySignature(tt.secret, tt.body, tt.header); got != tt.want {
			t.Errorf("%s: VerifySignature = %v", tt.name, got)
		}
	}
}

// Property: a signature verifies for its own body and secret only.
func TestSignatureProperty(t *testing.T) {
	f := func(secret, body []byte, flip uint16) bool {
		if len(secret) == 0 {
			secret = []byte{0}
		}
		sig := Sign(secret, body)
		if !VerifySignature(secret, body, sig) {
			return false
		}
		if len(body) > 0 {
			mut := append([]byte(nil), body...)
			mut[int(flip)%len(mut)] ^= 1 << (flip % 8)
			if VerifySignature(secret, mut, sig) {
				return false
			}
		}
		return !VerifySignature(append(secret, 'x'), body, sig)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Error(fmt.Errorf("signature property: %w", err))
	}
}
