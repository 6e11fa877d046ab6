package main

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The README is the front page: the two commands a newcomer runs are its
// first code block, it stays short, and every relative link in it and in
// docs/ leads somewhere (a file that exists, a heading that exists).

// readmeMaxLines is the front page's budget (issue 14: "~300 lines at most").
const readmeMaxLines = 300

func TestReadmeFirstCodeBlockIsTheTwoCommands(t *testing.T) {
	doc := mustRead(t, "README.md")
	blocks := codeBlocks(doc)
	if len(blocks) == 0 {
		t.Fatal("README.md has no code block")
	}
	var cmds []string
	for _, line := range strings.Split(blocks[0], "\n") {
		if cmd, _, _ := strings.Cut(line, "#"); strings.TrimSpace(cmd) != "" {
			cmds = append(cmds, strings.Join(strings.Fields(cmd), " "))
		}
	}
	want := []string{"go run . demo", "bash test/run.sh"}
	if strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("README.md's first code block runs %q, want exactly %q", cmds, want)
	}
	ci := mustRead(t, ".ci/run")
	if !regexp.MustCompile(`(?m)^exec bash test/run\.sh\s*$`).MatchString(ci) {
		t.Errorf(".ci/run does not run exactly `bash test/run.sh`, the README's test command:\n%s", ci)
	}
}

func TestReadmeIsAFrontPage(t *testing.T) {
	doc := mustRead(t, "README.md")
	if n := strings.Count(doc, "\n"); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: reference belongs in docs/<topic>.md, with a link from README's \"Where to read next\"", n, readmeMaxLines)
	}
}

func TestDocsLinksResolve(t *testing.T) {
	files := []string{"README.md"}
	err := filepath.WalkDir("docs", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := headingAnchors(mustRead(t, path))
		anchors[path] = a
		return a
	}
	checked := 0
	for _, file := range files {
		for _, l := range markdownLinks(mustRead(t, file)) {
			target := l.target
			if u, err := url.Parse(target); err == nil && u.Scheme != "" {
				continue // http(s), mailto: not checked here
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				p, err := url.PathUnescape(path)
				if err != nil {
					t.Errorf("%s:%d: link %q: %v", file, l.line, target, err)
					continue
				}
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(p))
				st, err := os.Stat(dest)
				if err != nil {
					t.Errorf("%s:%d: link %q: %s does not exist", file, l.line, target, dest)
					continue
				}
				if st.IsDir() {
					if frag != "" {
						t.Errorf("%s:%d: link %q: anchor on a directory", file, l.line, target)
					}
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s:%d: link %q: anchor into a non-Markdown file", file, l.line, target)
				continue
			}
			if !anchorsOf(dest)[frag] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", file, l.line, target, dest, frag)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the link scanner is broken")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// codeBlocks returns the contents of the fenced code blocks of a Markdown
// document, in order.
func codeBlocks(doc string) []string {
	var blocks []string
	var cur []string
	fence := ""
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence, cur = f, nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
			blocks = append(blocks, strings.Join(cur, "\n"))
			fence = ""
			continue
		}
		cur = append(cur, line)
	}
	return blocks
}

func fenceOf(trimmed string) string {
	for _, c := range []string{"`", "~"} {
		if strings.HasPrefix(trimmed, c+c+c) {
			n := len(trimmed) - len(strings.TrimLeft(trimmed, c))
			return strings.Repeat(c, n)
		}
	}
	return ""
}

type mdLink struct {
	target string
	line   int
}

var (
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLink    = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
)

// markdownLinks returns the inline, image and reference-definition link
// targets of doc outside code blocks and code spans.
func markdownLinks(doc string) []mdLink {
	var links []mdLink
	fence := ""
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence = f
				continue
			}
		} else {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			links = append(links, mdLink{m[1], n})
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			links = append(links, mdLink{m[1], n})
		}
	}
	return links
}

var (
	atxHeading = regexp.MustCompile(`^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	mdLinkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// headingAnchors returns the anchors GitHub generates for doc's headings
// (lower case, punctuation dropped, spaces to hyphens, "-1", "-2" … for
// repeats) and any explicit <a name/id> anchors.
func headingAnchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if f := fenceOf(trimmed); f != "" {
				fence = f
				continue
			}
		} else {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			anchors[m[1]] = true
		}
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := githubSlug(m[1])
		if k := seen[slug]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, k)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

func githubSlug(heading string) string {
	heading = mdLinkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGithubSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Several replicas": "several-replicas",
		"`GET /admin/api/performance/responsiveness`":    "get-adminapiperformanceresponsiveness",
		"Backpressure: saying no early":                  "backpressure-saying-no-early",
		"Database (`database_manager`)":                  "database-database_manager",
		"go#78973 with stalled uploaders (found, fixed)": "go78973-with-stalled-uploaders-found-fixed",
		"Next to the app in a pod (Kubernetes)":          "next-to-the-app-in-a-pod-kubernetes",
		"Live configuration: `GET`/`POST /admin/api`":    "live-configuration-getpost-adminapi",
	} {
		if got := githubSlug(in); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", in, got, want)
		}
	}
}
