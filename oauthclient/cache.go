package oauthclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// Entry is one cached token with what is needed to refresh it. Client secrets are never cached.
type Entry struct {
	Grant        string    `json:"grant"`
	Issuer       string    `json:"issuer,omitempty"`
	ClientID     string    `json:"client_id"`
	TokenURL     string    `json:"token_url"`
	TokenType    string    `json:"token_type"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Scope        string    `json:"scope,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	ObtainedAt   time.Time `json:"obtained_at"`
}

func newEntry(grant, issuer, clientID, tokenURL string, t *oauth2.Token) *Entry {
	e := &Entry{
		Grant: grant, Issuer: issuer, ClientID: clientID, TokenURL: tokenURL,
		TokenType: t.Type(), AccessToken: t.AccessToken, RefreshToken: t.RefreshToken,
		Expiry: t.Expiry, ObtainedAt: time.Now().UTC(),
	}
	if s, ok := t.Extra("scope").(string); ok {
		e.Scope = s
	}
	if s, ok := t.Extra("id_token").(string); ok {
		e.IDToken = s
	}
	return e
}

// Expired reports whether the access token is expired, or will be within skew.
func (e *Entry) Expired(now time.Time, skew time.Duration) bool {
	return !e.Expiry.IsZero() && !now.Add(skew).Before(e.Expiry)
}

// Cache is the token cache file: one entry per client, plus which one was obtained last.
type Cache struct {
	Path string
}

type cacheFile struct {
	Current string            `json:"current"`
	Entries map[string]*Entry `json:"entries"`
}

// DefaultCachePath is <user cache dir>/scopegate/tokens.json.
func DefaultCachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("token cache: %w (set --cache)", err)
	}
	return filepath.Join(dir, "scopegate", "tokens.json"), nil
}

func (c Cache) read() (*cacheFile, error) {
	f := &cacheFile{Entries: map[string]*Entry{}}
	data, err := os.ReadFile(c.Path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("token cache %s: %w", c.Path, err)
	}
	if f.Entries == nil {
		f.Entries = map[string]*Entry{}
	}
	return f, nil
}

// Get returns the entry for clientID, or the last obtained one when clientID is "".
func (c Cache) Get(clientID string) (*Entry, error) {
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	key := clientID
	if key == "" {
		key = f.Current
	}
	e, ok := f.Entries[key]
	if !ok || key == "" {
		if clientID == "" {
			return nil, fmt.Errorf("token cache %s: no token yet (run `scopegate token login` or `scopegate token client-credentials`)", c.Path)
		}
		return nil, fmt.Errorf("token cache %s: no token for client %q", c.Path, clientID)
	}
	return e, nil
}

// Clients lists the cached client IDs.
func (c Cache) Clients() ([]string, error) {
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	var ids []string
	for id := range f.Entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Put stores e as its client's entry and the current one. The file is replaced atomically and
// is readable by its owner only (0600, in a 0700 directory): it holds bearer tokens.
func (c Cache) Put(e *Entry) error {
	f, err := c.read()
	if err != nil {
		return err
	}
	f.Entries[e.ClientID] = e
	f.Current = e.ClientID
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	dir := filepath.Dir(c.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tokens-*.json") // created 0600
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("token cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.Path); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}
