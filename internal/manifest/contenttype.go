package manifest

import (
	"path"
	"strings"
)

// contentTypes is registered explicitly so every node answers the same
// Content-Type whatever its host's /etc/mime.types says.
var contentTypes = map[string]string{
	".mp4":  "video/mp4",
	".m4v":  "video/mp4",
	".m4a":  "audio/mp4",
	".m4s":  "video/iso.segment",
	".webm": "video/webm",
	".mkv":  "video/x-matroska",
	".mov":  "video/quicktime",
	".mpg":  "video/mpeg",
	".mpeg": "video/mpeg",
	".ts":   "video/mp2t",
	".m3u8": "application/vnd.apple.mpegurl",
	".mpd":  "application/dash+xml",
	".ogv":  "video/ogg",
	".ogg":  "audio/ogg",
	".mp3":  "audio/mpeg",
	".aac":  "audio/aac",
	".vtt":  "text/vtt; charset=utf-8",
	".srt":  "application/x-subrip",
	".jpg":  "image/jpeg",
	".jpeg": "image/jpeg",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
}

// ContentType returns the MIME type p2pd serves for a file name.
func ContentType(name string) string {
	if ct, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
		return ct
	}
	return "application/octet-stream"
}
