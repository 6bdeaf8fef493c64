"""The site's articles: fetched from feeds or imported, cleaned, stored."""
