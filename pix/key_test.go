package pix

import (
	"fmt"
	"strings"
	"testing"
	"testing/quick"

	"mutuo/lending"
)

func TestParseKeyValid(t *testing.T) {
	tests := []struct {
		in   string
		typ  KeyType
		norm string
	}{
		{"52998224725", KeyCPF, "52998224725"},
		{"529.982.247-25", KeyCPF, "52998224725"},
		{" 111.444.777-35 ", KeyCPF, "11144477735"},
		{"12345678909", KeyCPF, "12345678909"},
		{"11222333000181", KeyCNPJ, "11222333000181"},
		{"11.222.333/0001-81", KeyCNPJ, "11222333000181"},
		{"12.345.678/0001-95", KeyCNPJ, "12345678000195"},
		{"12.ABC.345/01DE-35", KeyCNPJ, "12ABC34501DE35"}, // Receita Federal's alphanumeric example
		{"12abc34501de35", KeyCNPJ, "12ABC34501DE35"},
		{"+5511987654321", KeyPhone, "+5511987654321"},
		{"+55 (11) 98765-4321", KeyPhone, "+5511987654321"},
		{"+55 21 3456-7890", KeyPhone, "+552134567890"},
		{"fulano@example.com", KeyEmail, "fulano@example.com"},
		{"Fulano.De_Tal+pix@Mail.Example.COM.BR", KeyEmail, "fulano.de_tal+pix@mail.example.com.br"},
		{"a@b.co", KeyEmail, "a@b.co"},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 8) + ".com", KeyEmail, strings.Repeat("a", 64) + "@" + strings.Repeat("b", 8) + ".com"},
		{"1b4e28ba-2fa1-41d2-883f-0016d3cca427", KeyEVP, "1b4e28ba-2fa1-41d2-883f-0016d3cca427"},
		{"1B4E28BA-2FA1-41D2-B83F-0016D3CCA427", KeyEVP, "1b4e28ba-2fa1-41d2-b83f-0016d3cca427"},
	}
	for _, tt := range tests {
		typ, norm, err := ParseKey(tt.in)
		if err != nil || typ != tt.typ || norm != tt.norm {
			t.Errorf("ParseKey(%q) = %s, %q, %v; want %s, %q", tt.in, typ, norm, err, tt.typ, tt.norm)
		}
		// Normalized keys parse to themselves.
		if typ2, norm2, err := ParseKey(norm); err != nil || typ2 != typ || norm2 != norm {
			t.Errorf("ParseKey(%q) (normalized) = %s, %q, %v", norm, typ2, norm2, err)
		}
	}
}

func TestParseKeyInvalid(t *testing.T) {
	bad := []string{
		"", "   ",
		"52998224724",                // CPF check digit
		"529.982.247-52",             // swapped check digits
		"11111111111", "00000000000", // all same digit (checksums pass)
		"1234567890",                           // 10 digits
		"11987654321",                          // a phone without +55 reads as a CPF: invalid
		"11222333000180",                       // CNPJ check digit
		"00000000000000",                       // all same
		"12ABC34501DE36",                       // alphanumeric CNPJ check digit
		"12ABC34501DEX5",                       // letters in the check digits
		"12ABC345O1DE35",                       // letter O for zero changes the value
		"+5511987654321x",                      // junk
		"+1 202 555 0100",                      // not Brazil
		"+55119876543",                         // 9 national digits
		"+55119876543210",                      // 12 national digits
		"+5501987654321",                       // area code with a zero
		"+5511887654321",                       // 9-digit number not starting with 9
		"+55",                                  //
		"fulano@",                              //
		"@example.com",                         //
		"fulano@example",                       // one label
		"fulano@example.c",                     // one-letter TLD
		"fulano@example.123",                   // numeric TLD
		"ful ano@example.com",                  // space
		"fulano@@example.com",                  //
		".fulano@example.com",                  // leading dot
		"ful..ano@example.com",                 // double dot
		"fulano@-example.com",                  // label starts with hyphen
		"fulano@exa_mple.com",                  // underscore in domain
		"fulanô@example.com",                   // non-ASCII
		strings.Repeat("a", 65) + "@b.com",     // local part too long
		"1b4e28ba-2fa1-11d2-883f-0016d3cca427", // UUID v1
		"1b4e28ba-2fa1-41d2-283f-0016d3cca427", // wrong variant
		"1b4e28ba-2fa1-41d2-883f-0016d3cca42g", // not hex
		"1b4e28ba2fa1-41d2-883f-0016d3cca4277", // misplaced dash
		"123e4567-e12b-12d1-a456-426655440000", // the BCB example key is not a v4 UUID
		"chave-qualquer",
		strings.Repeat("x", 78),
	}
	for _, s := range bad {
		typ, norm, err := ParseKey(s)
		if !lending.IsCode(err, lending.CodeBadUserInput) || typ != "" || norm != "" {
			t.Errorf("ParseKey(%q) = %s, %q, %v; want BAD_USER_INPUT", s, typ, norm, err)
		}
		if err != nil && len(s) > 4 && !strings.HasPrefix(s, "+") && strings.Contains(err.Error(), s) {
			t.Errorf("error %q echoes the key", err)
		}
	}
	long := strings.Repeat("a", 60) + "@example.com.br" // 75 characters
	if _, _, err := ParseKey(long); err != nil {
		t.Errorf("75-character e-mail: %v", err)
	}
	tooLong := strings.Repeat("a", 63) + "@example.com.br" // 78 characters
	if _, _, err := ParseKey(tooLong); err == nil {
		t.Errorf("78-character e-mail accepted")
	}
}

// Property: every 9-digit base (not all one digit) has exactly one valid
// CPF, which ParseKey accepts with punctuation. (Not every single-digit typo
// is caught: the check digits map remainders 0 and 10 both to 0.)
func TestCPFProperty(t *testing.T) {
	f := func(base uint32) bool {
		b := fmt.Sprintf("%09d", base%1_000_000_000)
		valid := 0
		var cpf string
		for dv := 0; dv < 100; dv++ {
			c := fmt.Sprintf("%s%02d", b, dv)
			if validCPF(c) {
				valid++
				cpf = c
			}
		}
		if allSame(b) { // the only checksum-valid completion is all the same digit
			return valid == 0
		}
		if valid != 1 {
			return false
		}
		formatted := cpf[:3] + "." + cpf[3:6] + "." + cpf[6:9] + "-" + cpf[9:]
		typ, norm, err := ParseKey(formatted)
		return err == nil && typ == KeyCPF && norm == cpf
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 500}); err != nil {
		t.Error(err)
	}
}

func TestMaskKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"529.982.247-25", "***.982.247-**"},
		{"11222333000181", "11.***.***/****-81"},
		{"+55 11 98765-4321", "+55 11 *****-4321"},
		{"Fulano@Example.com", "f***@e***.com"},
		{"1b4e28ba-2fa1-41d2-883f-0016d3cca427", "1b4e****-****-****-****-********a427"},
		{"not a key", "***(9 chars)"},
		{"", "***(0 chars)"},
		{"52998224724", "***(11 chars)"},
	}
	for _, tt := range tests {
		if got := MaskKey(tt.in); got != tt.want {
			t.Errorf("MaskKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseKey: never panics; a parsed key is normalized (parses to itself)
// and its mask never contains it.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"52998224725", "12.ABC.345/01DE-35", "+5511987654321", "a@b.co", "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "", "+", "@", "----"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mask := MaskKey(s)
		typ, norm, err := ParseKey(s)
		if err != nil {
			if !lending.IsCode(err, lending.CodeBadUserInput) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if typ2, norm2, err := ParseKey(norm); err != nil || typ2 != typ || norm2 != norm {
			t.Fatalf("ParseKey(%q) = %s %q; again %s %q %v", s, typ, norm, typ2, norm2, err)
		}
		if strings.Contains(mask, norm) {
			t.Fatalf("MaskKey(%q) = %q reveals the key", s, mask)
		}
	})
}
